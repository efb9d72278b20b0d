"""Variational autoencoders (vae): train, test negative ELBO and IWAE log-likelihood, pictures.

With binarization (the default on MNIST) every training batch is a fresh Bernoulli draw of the
grey levels (dynamic binarization) and the likelihood is Bernoulli; the test set is binarized once
with a fixed key, the same for every run, and both test figures use that one binarized set.
Without it the model trains on grey levels (or colour levels) with a Gaussian likelihood (learned
global scale). Every figure is in nats per image, summed over the H x W x C pixel values (and
over the latent units); results.json names the likelihood and the units.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import metrics
from jaxae.config import NON_NEGATIVE, POSITIVE_INT, Config, option
from jaxae.data import Split
from jaxae.models.autoencoder import CELL
from jaxae.models.vae import VAE, sample
from jaxae.objectives import to_float, vae
from jaxae.outputs import save_grid
from jaxae.registry import ModelSpec, register
from jaxae.runs.common import optimizer
from jaxae.train.evaluate import evaluate, map_examples
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_train_step

# The test set's one binarization: independent of the run's seed, so runs compare on the same data.
TEST_BINARIZATION_KEY = 20140101
LIKELIHOOD_UNITS = {
    "bernoulli": "Bernoulli likelihood of binarized pixels",
    "gaussian": "Gaussian density of levels in [0, 1]; not comparable with Bernoulli nats",
}


@dataclasses.dataclass(frozen=True)
class VAEOptions:
    """The variational autoencoder's own settings."""

    arch: str = option("mlp", "mlp (one hidden layer), or conv (the conv autoencoder's layers: H and W multiples of 4)", choices=("mlp", "conv"))
    hidden: int = option(400, "hidden units of the mlp encoder and decoder", range=POSITIVE_INT)
    latent: int = option(20, "latent units", range=POSITIVE_INT)
    beta: float = option(1.0, "weight of the KL term in the training loss (beta-VAE)", range=NON_NEGATIVE)
    binarize: bool | None = option(None, "dynamic binarization with a Bernoulli likelihood (default: on for mnist; off: a Gaussian likelihood of grey levels)")
    nll_samples: int = option(0, "importance samples for the test log-likelihood (0: skip it)", range=NON_NEGATIVE, resumable=True)


def uses_binarization(config: Config) -> bool:
    """The binarize option, where None means on for MNIST and off for other datasets."""
    binarize = config.options.binarize
    return config.dataset == "mnist" if binarize is None else binarize


def build_model(config: Config, info) -> VAE:
    """The configured VAE for the data: Bernoulli likelihood on binarized data, Gaussian on levels."""
    likelihood = "bernoulli" if uses_binarization(config) else "gaussian"
    o = config.options
    return VAE(info.image_shape, latent=o.latent, hidden=o.hidden, arch=o.arch, likelihood=likelihood)


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    """The freshly initialised TrainState of the configured VAE (also a restore template)."""
    example = jnp.zeros((1, *info.image_shape))
    return create_train_state(build_model(config, info), optimizer(config, steps_per_epoch), key, example, key)


def train_step(config: Config, info):
    return make_train_step(vae(config.options.beta, dynamic_binarization=uses_binarization(config)), config.micro_batches)


def eval_step(config: Config, info):
    metrics_of = vae(config.options.beta, dynamic_binarization=False)

    def step(state, batch, key):
        return metrics_of(state.params, state.apply_fn, batch, key)[1]

    return step


def binarize_once(images: np.ndarray) -> np.ndarray:
    """uint8 grey-level images -> uint8 {0, 255} images, one Bernoulli draw with a fixed key.

    It draws with `jax.random.bernoulli`, not training's `binarize`, so that the binarized test
    set, and the log-likelihoods reported on it, stay those of earlier runs.
    """
    key = jax.random.fold_in(jax.random.key(0), TEST_BINARIZATION_KEY)
    return np.asarray(jax.random.bernoulli(key, to_float(jnp.asarray(images)))).astype(np.uint8) * 255


def test_split(config: Config, data) -> Split:
    """The test split the VAE is scored on: binarized once (fixed key) where it trains binarized."""
    if not uses_binarization(config):
        return data.test
    loaded = data.test.load()
    return Split({**loaded, "image": binarize_once(loaded["image"])})


def estimate_nll(model: VAE, params, images: np.ndarray, key: jax.Array, k: int) -> float:
    """`metrics.iwae_nll` of `model` with k samples on uint8 images: mean nats per image."""

    def encode(params, x):
        return model.apply({"params": params}, x, method=VAE.encode)

    def log_likelihood(params, x, z):
        return model.apply({"params": params}, x, z, method=VAE.decode_log_likelihood)

    return metrics.iwae_nll(encode, log_likelihood, params, to_float(jnp.asarray(images)), key, k)


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    """test_neg_elbo, test_recon, test_kl (one reparameterized sample per test image), test_nll
    (IWAE with nll_samples samples; null when 0), all in nats per image summed over the pixel
    values; the likelihood and its units, nll_seconds."""
    test = test_split(config, data)
    elbo_key, nll_key = jax.random.split(key)
    # The test set is already binarized (or grey): no binarization at evaluation.
    scores = evaluate(make_eval_step(vae(config.options.beta, dynamic_binarization=False), state.apply_fn), state.params, test, elbo_key)
    model = build_model(config, data.info)
    nll, nll_seconds = None, 0.0
    if config.options.nll_samples > 0:
        start = time.perf_counter()
        nll = estimate_nll(model, state.params, test.load()["image"], nll_key, config.options.nll_samples)
        nll_seconds = time.perf_counter() - start
    values = math.prod(data.image_shape)
    return {
        "test_neg_elbo": scores["neg_elbo"],
        "test_recon": scores["recon"],
        "test_kl": scores["kl"],
        "test_nll": nll,
        "nll_samples": config.options.nll_samples,
        "nll_seconds": nll_seconds,
        "elbo_samples": 1,
        "train_neg_elbo_last_epoch": history[-1]["neg_elbo"],
        "likelihood": model.likelihood,
        "binarized": uses_binarization(config),
        "units": f"nats per image, summed over {values} pixel values ({LIKELIHOOD_UNITS[model.likelihood]})",
    }


def _posterior_mean(model: VAE, params, batch, key):
    return model.apply({"params": params}, to_float(batch["image"]), method=VAE.encode)[0]


def _latent_grid(side: int = 15) -> np.ndarray:
    """(side*side, 2) codes at the prior's quantiles 0.05 ... 0.95, row-major, z[1] decreasing down."""
    quantiles = np.array([NormalDist().inv_cdf(q) for q in np.linspace(0.05, 0.95, side)], np.float32)
    return np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)


def pictures(config: Config, state, data, key: jax.Array, folder, history: list[dict]) -> None:
    """samples.png (10x10 prior samples), reconstructions.png (rows of test images, then their
    reconstructions from the posterior mean); for a 2-unit latent also latent_grid.png (decoded
    codes on a 15x15 grid of prior quantiles) and latent_scatter.png (test posterior means, by
    label where the data has labels)."""
    model, params, test = build_model(config, data.info), state.params, test_split(config, data)
    grid = _latent_grid() if model.latent == 2 else np.zeros((0, model.latent), np.float32)

    @jax.jit
    def draw(params, originals, grid):
        decode = lambda z: jax.nn.sigmoid(model.apply({"params": params}, z, method=VAE.decode))  # noqa: E731
        mu, _ = model.apply({"params": params}, originals, method=VAE.encode)
        return sample(params, model, key, 100), decode(mu), decode(grid)

    originals = to_float(jnp.asarray(test.gather(np.arange(min(20, len(test))))["image"]))
    samples, restored, decoded_grid = jax.device_get(draw(params, originals, grid))
    save_grid(folder / "samples.png", list(samples.reshape(10, 10, *samples.shape[1:])))
    save_grid(folder / "reconstructions.png", [originals[:10], restored[:10], originals[10:], restored[10:]])
    if model.latent == 2:
        save_grid(folder / "latent_grid.png", list(decoded_grid.reshape(15, 15, *decoded_grid.shape[1:])))
        codes = map_examples(functools.partial(_posterior_mean, model), params, test)
        _scatter(codes, test.labels, folder / "latent_scatter.png")


def _scatter(codes: np.ndarray, labels: np.ndarray | None, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=2)
    else:
        classes = int(np.max(labels)) + 1
        points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10" if classes <= 10 else "viridis", s=2,
                            vmin=-0.5, vmax=classes - 0.5)
        fig.colorbar(points, ax=ax, ticks=range(classes), label="label")
    ax.set(xlabel="z[0] (posterior mean)", ylabel="z[1] (posterior mean)", title="test codes")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def check_data(config: Config, info) -> None:
    height, width, _ = info.image_shape
    if config.options.arch == "conv" and (height % CELL or width % CELL):
        raise ValueError(f"the conv VAE needs H and W multiples of {CELL}, got {height}x{width}: use --arch mlp, or crop or pad the images")


register(ModelSpec(
    name="vae", summary="variational autoencoder: ELBO training, IWAE log-likelihood, samples from the prior",
    options=VAEOptions, init=init, train_step=train_step, eval_step=eval_step, evaluate=evaluate_run,
    pictures=pictures, check_data=check_data,
    defaults={"dataset": "mnist", "epochs": 10, "batch_size": 32, "learning_rate": 3e-3},
))
