"""Super-resolution (sr): restore sharp H x H images from their factor-x downsampled versions.

The degradation is `noise.downsample` (box filter) to l x l, l = H / factor. The network sees the
bicubic upsampling of the l x l image (sr_input "blurry") or the l x l image itself ("lowres").
Nearest and bicubic interpolation of the same low-res test images are scored alongside it, all
with PSNR (dB) and SSIM, per image then averaged, data range 1.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp

from jaxae import noise
from jaxae.config import Config
from jaxae.models.superres import superres
from jaxae.objectives import Corruption, reconstruction, to_float
from jaxae.outputs import save_grid
from jaxae.runs.common import (
    RunDir,
    fit_options,
    load_split,
    optimizer,
    restoration_metrics,
    run_keys,
    timings_and_sizes,
)
from jaxae.train.loop import fit
from jaxae.train.state import create_train_state
from jaxae.train.step import make_train_step

BASELINES = ("nearest", "bicubic")


def low_res(factor: int) -> Corruption:
    """The degradation as a key-ignoring corruption: (N, H, W, C) -> (N, H/factor, W/factor, C)."""
    return lambda key, x: noise.downsample(x, factor)


def network_input(config: Config) -> Callable[[jax.Array], jax.Array]:
    """Low-res images (N, l, l, C) -> the network's input: bicubic H x H ("blurry") or themselves ("lowres")."""
    if config.sr_input == "blurry":
        return partial(noise.upsample, factor=config.factor, method="bicubic")
    if config.sr_input == "lowres":
        return lambda x: x
    raise ValueError(f"unknown sr_input {config.sr_input!r}: use blurry or lowres")


def corruption(config: Config) -> Corruption:
    """Clean images (N, H, W, C) -> the network's input; ignores the key (the degradation is fixed)."""
    degrade, prepare = low_res(config.factor), network_input(config)
    return lambda key, x: prepare(degrade(key, x))


def train_and_evaluate(config: Config, run: RunDir) -> dict:
    """Trains the configured SR network; writes run.path/{metrics.jsonl,results.json,samples.png}."""
    model = superres(config.sr_input, config.factor)
    corrupt = corruption(config)
    keys = run_keys(config)
    train_images, _ = load_split(config, "train")
    test_images, _ = load_split(config, "test")
    example = corrupt(None, jnp.zeros((1, *train_images.shape[1:])))
    tx = optimizer(config, len(train_images) // config.batch_size)
    state = run.start(create_train_state(model, tx, keys["init"], example))
    result = fit(
        state,
        make_train_step(reconstruction(corrupt, config.training_loss), config.micro_batches),
        train_images,
        key=keys["train"],
        **run.fit_hooks(),
        **fit_options(config),
    )
    params, prepare, degrade = result.state.params, network_input(config), low_res(config.factor)
    restorers = {
        "test": lambda low: jax.nn.sigmoid(model.apply({"params": params}, prepare(low))),
        **{name: partial(noise.upsample, factor=config.factor, method=name) for name in BASELINES},
    }
    results = {"factor": config.factor, "sr_input": config.sr_input}
    for name, scores in restoration_metrics(restorers, degrade, test_images, keys["eval"]).items():
        results.update({f"{name}_{k}": v for k, v in scores.items()})
    results.update(timings_and_sizes(result, len(train_images), len(test_images)))
    clean = to_float(jnp.asarray(test_images[:10]))
    low = degrade(keys["pictures"], clean)
    rows = [restorers[name](low) for name in ("nearest", "bicubic", "test")]
    save_grid(run.path / "samples.png", [*rows, clean])
    return run.finish(results)
