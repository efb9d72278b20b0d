"""What the report trains: the runs of each section, per budget.

The full budget trains the convolutional models of the lesson on every image. The quick budget
trains the MLP autoencoders, denoisers and GANs instead (10-20 times more steps per second on a
CPU than the conv models), fewer code sizes and super-resolution factors, and an MLP feature
network for the FIDs, so that its answers agree with the full budget's in minutes.
"""

from __future__ import annotations

import dataclasses

from jaxae import recipes
from jaxae.config import Config, make_config

DATASETS = ("mnist", "fashion_mnist")
NOISES = ("gaussian:0.2", "mask:0.3", "salt_and_pepper:0.1")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Config overrides per model family. `autoencoder` applies to the ae and dae runs, `vae` to
    every VAE, then `likelihood_vae` to the one whose log-likelihood the report gives (binarized
    MNIST, vae_mnist) and `latent2_vae` to the 2-unit one; `gan` holds the feature network's
    recipe too (the VAE's FID uses the same network)."""

    description: str
    code_sizes: tuple[int, ...]
    factors: tuple[int, ...]
    autoencoder: dict
    sr: dict
    vae: dict
    gan: dict
    likelihood_vae: dict = dataclasses.field(default_factory=dict)
    latent2_vae: dict = dataclasses.field(default_factory=dict)


BUDGETS = {
    "quick": Budget(
        "MLP autoencoders and denoisers (code sizes 16 and 30) for 3 "
        "epochs, super-resolution x2 for one epoch of 38400 images, the binarized-MNIST VAE for 15 "
        "epochs at batch 128, MLP GANs for 3 epochs, an MLP feature network for the FIDs; 2000 test "
        "images, IWAE with 100 samples",
        code_sizes=(16, 30),
        factors=(2,),
        autoencoder=dict(arch="mlp", epochs=3, learning_rate=3e-3, test_size=2000),
        sr=dict(epochs=1, train_size=38400, batch_size=64, learning_rate=3e-3, test_size=2000),
        vae=dict(epochs=10, batch_size=128, test_size=2000, nll_samples=100),
        gan=dict(arch="mlp", epochs=3, steps_per_dispatch=64, test_size=2000, classifier_arch="mlp"),
        likelihood_vae=dict(epochs=15),
        latent2_vae=dict(epochs=3),
    ),
    "full": Budget(
        "the publication settings, about 3 hours on 2 CPU cores: conv autoencoders 5 epochs, SR 10, "
        "VAEs 10, the binarized-MNIST VAE 784-1000-50 for 400 epochs at batch 128 and Adam 1e-3 "
        "(27 minutes) with IWAE k=5000, DCGAN 10 (Adam 1.2e-3 with b1 0, lazy R1 1 every 4 steps, "
        "samples from a 0.999 moving average), all 60000 training and 10000 test images",
        code_sizes=(2, 8, 16, 30, 64),
        factors=(2, 4),
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
        for size in budget.code_sizes:
            configs[f"ae_{dataset}_code{size}"] = make_config("ae", dataset=dataset, code_size=size, **budget.autoencoder)
        for noise in NOISES:
            configs[f"dae_{dataset}_{noise_kind(noise)}"] = make_config("dae", dataset=dataset, noise=noise, **budget.autoencoder)
        for factor in budget.factors:
            configs[f"sr_{dataset}_x{factor}"] = make_config("sr", dataset=dataset, factor=factor, **budget.sr)
        likelihood = budget.likelihood_vae if dataset == "mnist" else {}
        configs[f"vae_{dataset}"] = make_config("vae", dataset=dataset, **{**budget.vae, **likelihood})
        configs[f"gan_{dataset}"] = make_config("gan", dataset=dataset, **budget.gan)
    configs["vae_mnist_latent2"] = make_config("vae", dataset="mnist", latent=2, **{**budget.vae, "nll_samples": 0, **budget.latent2_vae})
    return {name: config.replace(progress=False) for name, config in configs.items()}
