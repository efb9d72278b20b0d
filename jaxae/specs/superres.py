"""Super-resolution (sr): restore sharp H x W images from their factor-x downsampled versions.

The degradation is `noise.downsample` (box filter) to H/factor x W/factor. The network sees the
bicubic upsampling of the low-resolution image (sr_input "blurry") or that image itself
("lowres"). Nearest and bicubic interpolation of the same low-resolution test images are scored
alongside it, all with PSNR (dB) and SSIM, per image then averaged, data range 1.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp

from jaxae import noise
from jaxae.config import Config, option
from jaxae.models.superres import CELL, superres
from jaxae.objectives import Corruption, reconstruction, to_float
from jaxae.outputs import save_grid
from jaxae.registry import ModelSpec, register
from jaxae.runs.common import optimizer, restoration_metrics
from jaxae.train.state import create_train_state
from jaxae.train.step import make_state_eval_step, make_train_step

BASELINES = ("nearest", "bicubic")
FACTORS = (2, 4)


@dataclasses.dataclass(frozen=True)
class SuperResolutionOptions:
    """The super-resolution network's own settings."""

    factor: int = option(2, "downsampling factor, 2 or 4 (H and W multiples of 4)", choices=FACTORS)
    sr_input: str = option(
        "blurry", "the network's input: blurry (bicubic back to H x W) or lowres (H/factor x W/factor)", choices=("blurry", "lowres")
    )
    loss: str | None = option(None, "reconstruction loss, mse or bce (default: mse)", choices=("mse", "bce"))


def low_res(factor: int) -> Corruption:
    """The degradation as a key-ignoring corruption: (N, H, W, C) -> (N, H/factor, W/factor, C)."""
    return lambda key, x: noise.downsample(x, factor)


def network_input(config: Config) -> Callable[[jax.Array], jax.Array]:
    """Low-res images (N, l, m, C) -> the network's input: bicubic H x W ("blurry") or themselves ("lowres")."""
    if config.options.sr_input == "blurry":
        return partial(noise.upsample, factor=config.options.factor, method="bicubic")
    return lambda x: x


def corruption(config: Config) -> Corruption:
    """Clean images (N, H, W, C) -> the network's input; ignores the key (the degradation is fixed)."""
    degrade, prepare = low_res(config.options.factor), network_input(config)
    return lambda key, x: prepare(degrade(key, x))


def objective(config: Config):
    return reconstruction(corruption(config), config.options.loss or "mse")


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    model = superres(config.options.sr_input, config.options.factor)
    example = corruption(config)(None, jnp.zeros((1, *info.image_shape)))
    return create_train_state(model, optimizer(config, steps_per_epoch), key, example)


def train_step(config: Config, info):
    return make_train_step(objective(config), config.micro_batches)


def eval_step(config: Config, info):
    return make_state_eval_step(objective(config))


def restorers(config: Config, state) -> dict:
    """{"test": the trained network, "nearest", "bicubic"}: low-res images -> H x W images."""
    prepare, factor = network_input(config), config.options.factor
    network = lambda low: jax.nn.sigmoid(state.apply_fn({"params": state.params}, prepare(low)))  # noqa: E731
    return {"test": network, **{name: partial(noise.upsample, factor=factor, method=name) for name in BASELINES}}


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    results = {"factor": config.options.factor, "sr_input": config.options.sr_input}
    for name, scores in restoration_metrics(restorers(config, state), low_res(config.options.factor), data.test, key).items():
        results.update({f"{name}_{k}": v for k, v in scores.items()})
    return results


def pictures(config: Config, state, data, key: jax.Array, folder, history: list[dict]) -> None:
    """samples.png: rows nearest, bicubic, the network, and the original, for 10 test images."""
    clean = to_float(jnp.asarray(data.test.gather(range(min(10, len(data.test))))["image"]))
    low = low_res(config.options.factor)(key, clean)
    methods = restorers(config, state)
    save_grid(folder / "samples.png", [*(methods[name](low) for name in ("nearest", "bicubic", "test")), clean])


def check_data(config: Config, info) -> None:
    height, width, _ = info.image_shape
    if height % CELL or width % CELL:
        raise ValueError(f"super-resolution needs H and W multiples of {CELL}, got {height}x{width}: crop or pad the images")


register(
    ModelSpec(
        name="sr",
        summary="super-resolution: H/f x W/f images -> H x W images, against bicubic",
        options=SuperResolutionOptions,
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        evaluate=evaluate_run,
        pictures=pictures,
        check_data=check_data,
        defaults={"epochs": 10},
    )
)
