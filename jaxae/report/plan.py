"""What the report trains: the runs of each section, with per-budget epochs and subset sizes."""
from __future__ import annotations

import dataclasses

from jaxae import recipes
from jaxae.config import Config, make_config

DATASETS = ("mnist", "fashion_mnist")

NOISES = ("gaussian:0.2", "mask:0.3", "salt_and_pepper:0.1")
CODE_SIZES = (2, 8, 16, 30, 64)
FACTORS = (2, 4)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Config overrides per model family; `autoencoder` applies to ae and dae, `vae` to every VAE
    and `likelihood_vae` on top of it to the one whose log-likelihood the report gives (binarized
    MNIST, vae_mnist)."""

    description: str
    autoencoder: dict
    sr: dict
    vae: dict
    gan: dict
    likelihood_vae: dict = dataclasses.field(default_factory=dict)


BUDGETS = {
    "quick": Budget(
        "about 10 minutes on 2 CPU cores: 1 epoch on the first 12800 training images (VAE: all of "
        "them), 2000 test images, IWAE with 100 samples, GAN on 6400 images (the full budget's "
        "settings, without the moving average). This checks that every part runs; the models are "
        "far from trained, so read the answers from the full budget",
        autoencoder=dict(epochs=1, train_size=12800, test_size=2000),
        sr=dict(epochs=1, train_size=12800, test_size=2000),
        vae=dict(epochs=1, test_size=2000, nll_samples=100),
        gan={"ema_decay": 0.0, "epochs": 1, "train_size": 6400, "test_size": 2000},
    ),
    "full": Budget(
        "the publication settings, about 3 hours on 2 CPU cores: autoencoders 5 epochs, SR 10, "
        "VAEs 10, the binarized-MNIST VAE 784-1000-50 for 400 epochs at batch 128 and Adam 1e-3 "
        "(27 minutes) with IWAE k=5000, DCGAN 10 (Adam 1.2e-3 with b1 0, lazy R1 1 every 4 steps, "
        "samples from a 0.999 moving average), all 60000 training and 10000 test images",
        autoencoder=dict(epochs=5),
        sr=dict(epochs=10),
        vae=dict(epochs=10, nll_samples=5000),
        gan=dict(epochs=10),
        likelihood_vae={k: v for k, v in recipes.load("vae_likelihood").items() if k not in ("model", "dataset")},
    ),
}


def noise_kind(noise: str) -> str:
    return noise.split(":")[0]


def plan(budget: Budget) -> dict[str, Config]:
    """Every run the report needs, by folder name."""
    configs = {}
    for dataset in DATASETS:
        for size in CODE_SIZES:
            configs[f"ae_{dataset}_code{size}"] = make_config("ae", dataset=dataset, code_size=size, **budget.autoencoder)
        for noise in NOISES:
            configs[f"dae_{dataset}_{noise_kind(noise)}"] = make_config("dae", dataset=dataset, noise=noise, **budget.autoencoder)
        for factor in FACTORS:
            configs[f"sr_{dataset}_x{factor}"] = make_config("sr", dataset=dataset, factor=factor, **budget.sr)
        likelihood = budget.likelihood_vae if dataset == "mnist" else {}
        configs[f"vae_{dataset}"] = make_config("vae", dataset=dataset, **{**budget.vae, **likelihood})
        configs[f"gan_{dataset}"] = make_config("gan", dataset=dataset, **budget.gan)
    configs["vae_mnist_latent2"] = make_config("vae", dataset="mnist", latent=2, **{**budget.vae, "nll_samples": 0})
    return {name: config.replace(progress=False) for name, config in configs.items()}
