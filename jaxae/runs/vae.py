"""Variational autoencoder runs: train, test negative ELBO and IWAE log-likelihood, pictures.

With binarization (the default on MNIST) every training batch is a fresh Bernoulli draw of the
grey levels (dynamic binarization) and the likelihood is Bernoulli; the test set is binarized once
with a fixed key, the same for every run, and both test figures use that one binarized set.
Without it the model trains on grey levels with a Gaussian likelihood (learned global scale).
Every figure is in nats per image, summed over the 784 pixels (and over the latent units).
"""
from __future__ import annotations

import time
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import metrics
from jaxae.config import Config
from jaxae.models.autoencoder import IMAGE_SHAPE
from jaxae.models.vae import VAE, sample
from jaxae.objectives import to_float, vae
from jaxae.outputs import save_grid
from jaxae.runs.common import RunDir, fit_options, load_split, optimizer, run_keys, timings_and_sizes
from jaxae.train.loop import evaluate, fit
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_train_step

# The test set's one binarization: independent of the run's seed, so runs compare on the same data.
TEST_BINARIZATION_KEY = 20140101
UNITS = {
    "bernoulli": "nats per image, summed over 784 pixels (Bernoulli likelihood of binarized pixels)",
    "gaussian": "nats per image, summed over 784 pixels (Gaussian density of grey levels in [0, 1]; "
    "not comparable with Bernoulli nats)",
}


def uses_binarization(config: Config) -> bool:
    """config.binarize, where None means on for MNIST and off for other datasets."""
    return config.dataset == "mnist" if config.binarize is None else config.binarize


def build_model(config: Config) -> VAE:
    """The configured VAE: Bernoulli likelihood on binarized data, Gaussian on grey levels."""
    likelihood = "bernoulli" if uses_binarization(config) else "gaussian"
    return VAE(IMAGE_SHAPE, latent=config.latent, hidden=config.hidden, arch=config.arch, likelihood=likelihood)


def initial_state(config: Config, steps_per_epoch: int, key: jax.Array):
    """The freshly initialised TrainState of the configured VAE (also a restore template)."""
    example = jnp.zeros((1, *IMAGE_SHAPE))
    return create_train_state(build_model(config), optimizer(config, steps_per_epoch), key, example, key)


def binarize_once(images: np.ndarray) -> np.ndarray:
    """uint8 grey-level images -> uint8 {0, 255} images, one Bernoulli draw with a fixed key.

    It draws with `jax.random.bernoulli`, not training's `binarize`, so that the binarized test
    set, and the log-likelihoods reported on it, stay those of earlier runs.
    """
    key = jax.random.fold_in(jax.random.key(0), TEST_BINARIZATION_KEY)
    return np.asarray(jax.random.bernoulli(key, to_float(jnp.asarray(images)))).astype(np.uint8) * 255


def estimate_nll(model: VAE, params, images: np.ndarray, key: jax.Array, k: int) -> float:
    """`metrics.iwae_nll` of `model` with k samples on uint8 images: mean nats per image."""
    return metrics.iwae_nll(model, params, to_float(jnp.asarray(images)), key, k)


def _encode_means(model: VAE, params, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Posterior means (N, latent) of uint8 images, float32 numpy."""
    encode = jax.jit(lambda params, x: model.apply({"params": params}, to_float(x), method=VAE.encode)[0])
    return np.concatenate([encode(params, images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def _latent_grid(side: int = 15) -> np.ndarray:
    """(side*side, 2) codes at the prior's quantiles 0.05 ... 0.95, row-major, z[1] decreasing down."""
    quantiles = np.array([NormalDist().inv_cdf(q) for q in np.linspace(0.05, 0.95, side)], np.float32)
    return np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)


def save_pictures(model: VAE, params, images: np.ndarray, labels: np.ndarray, key: jax.Array, folder) -> None:
    """samples.png (10x10 prior samples), reconstructions.png (rows of test images, then their
    reconstructions from the posterior mean); for a 2-unit latent also latent_grid.png (decoded
    codes on a 15x15 grid of prior quantiles) and latent_scatter.png (test posterior means by label)."""
    grid = _latent_grid() if model.latent == 2 else np.zeros((0, model.latent), np.float32)

    @jax.jit
    def pictures(params, originals, grid):
        decode = lambda z: jax.nn.sigmoid(model.apply({"params": params}, z, method=VAE.decode))  # noqa: E731
        mu, _ = model.apply({"params": params}, originals, method=VAE.encode)
        return sample(params, model, key, 100), decode(mu), decode(grid)

    originals = to_float(jnp.asarray(images[:20]))
    samples, restored, decoded_grid = jax.device_get(pictures(params, originals, grid))
    save_grid(folder / "samples.png", list(samples.reshape(10, 10, *samples.shape[1:])))
    save_grid(folder / "reconstructions.png", [originals[:10], restored[:10], originals[10:], restored[10:]])
    if model.latent == 2:
        save_grid(folder / "latent_grid.png", list(decoded_grid.reshape(15, 15, *decoded_grid.shape[1:])))
        _scatter(_encode_means(model, params, images), labels, folder / "latent_scatter.png")


def _scatter(codes: np.ndarray, labels: np.ndarray, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="label")
    ax.set(xlabel="z[0] (posterior mean)", ylabel="z[1] (posterior mean)", title="test codes")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def train_and_evaluate(config: Config, run: RunDir) -> dict:
    """Trains the configured VAE; writes run.path/{metrics.jsonl,results.json} and the pictures.

    results.json: test_neg_elbo, test_recon, test_kl (one reparameterized sample per test image),
    test_nll (IWAE with nll_samples samples; null when 0), all in nats per image summed over
    pixels; the likelihood, timings (steps_per_second, compile_seconds, nll_seconds).
    """
    keys = run_keys(config)
    train_images, _ = load_split(config, "train")
    test_images, test_labels = load_split(config, "test")
    binarized = uses_binarization(config)
    if binarized:
        test_images = binarize_once(test_images)
    model = build_model(config)
    state = run.start(initial_state(config, len(train_images) // config.batch_size, keys["init"]))
    result = fit(
        state,
        make_train_step(vae(config.beta, dynamic_binarization=binarized), config.micro_batches),
        train_images,
        key=keys["train"],
        **run.fit_hooks(),
        **fit_options(config),
    )
    params = result.state.params
    elbo_key, nll_key = jax.random.split(keys["eval"])
    # The test set is already binarized (or grey): no binarization at evaluation.
    eval_step = make_eval_step(vae(config.beta, dynamic_binarization=False), model.apply)
    test = evaluate(eval_step, params, test_images, elbo_key)
    nll, nll_seconds = None, 0.0
    if config.nll_samples > 0:
        start = time.perf_counter()
        nll = estimate_nll(model, params, test_images, nll_key, config.nll_samples)
        nll_seconds = time.perf_counter() - start
    results = {
        "test_neg_elbo": test["neg_elbo"],
        "test_recon": test["recon"],
        "test_kl": test["kl"],
        "test_nll": nll,
        "nll_samples": config.nll_samples,
        "nll_seconds": nll_seconds,
        "elbo_samples": 1,
        "train_neg_elbo_last_epoch": run.history()[-1]["neg_elbo"],
        "likelihood": model.likelihood,
        "binarized": binarized,
        "units": UNITS[model.likelihood],
        **timings_and_sizes(result, len(train_images), len(test_images)),
    }
    save_pictures(model, params, test_images, test_labels, keys["pictures"], run.path)
    return run.finish(results)
