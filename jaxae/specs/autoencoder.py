"""Compressing (ae) and denoising (dae) autoencoders: train, evaluate on the test split, picture.

results.json: test_mse (per pixel) and test_psnr (dB) of the reconstructions, the training loss;
for the dae also the noisy input's and the best gaussian blur's scores on the same noisy images.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from jaxae import baselines
from jaxae.config import POSITIVE_INT, Config, option
from jaxae.models.autoencoder import CELL, autoencoder
from jaxae.noise import Noise
from jaxae.objectives import no_corruption, reconstruction, to_float
from jaxae.outputs import save_grid
from jaxae.registry import ModelSpec, register
from jaxae.runs.common import optimizer, restoration_metrics
from jaxae.train.evaluate import evaluate
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_state_eval_step, make_train_step

ARCHS = ("mlp", "conv")
LOSSES = ("mse", "bce")
BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)  # pixels


@dataclasses.dataclass(frozen=True)
class AutoencoderOptions:
    """The compressing autoencoder's own settings."""

    arch: str = option("conv", "mlp, or conv (3x3 convs on a grid of 4x4-pixel cells: H and W multiples of 4)", choices=ARCHS)
    code_size: int = option(30, "code units", range=POSITIVE_INT)
    loss: str | None = option(None, "reconstruction loss, mse or bce (default: bce on mnist, else mse)", choices=LOSSES)


@dataclasses.dataclass(frozen=True)
class DenoisingOptions(AutoencoderOptions):
    """The denoising autoencoder's own settings: the compressing one's and its noise."""

    noise: str = option("gaussian:0.2", "the input noise KIND:LEVEL: gaussian:SIGMA, mask:RATE or salt_and_pepper:RATE", check=Noise.parse)


def training_loss(config: Config) -> str:
    """`loss`, or where unset: "bce" on MNIST, else "mse".

    On MNIST's mostly black digits, MSE through the sigmoid drives every logit towards -inf
    within ten steps (the all-black image); there its gradient vanishes and training stalls at
    test MSE 0.11. BCE keeps a gradient of -1 on the white pixels and trains normally.
    """
    return config.options.loss or ("bce" if config.dataset == "mnist" else "mse")


def corruption(config: Config):
    """The input corruption: the configured noise for a denoiser, none for a compressing one."""
    noise = getattr(config.options, "noise", None)
    return no_corruption if noise is None else Noise.parse(noise)


def objective(config: Config):
    return reconstruction(corruption(config), training_loss(config))


def blur_restorers() -> dict:
    """The gaussian-blur denoisers of the baseline, by name "blur_SIGMA"."""
    return {f"blur_{s}": partial(baselines.gaussian_blur, sigma=s) for s in BLUR_SIGMAS}


def best_blur(scores: dict) -> dict:
    """The blur with the best PSNR among `restoration_metrics` scores of `blur_restorers()`, chosen
    on the test images themselves (an optimistic baseline)."""
    name = max((n for n in scores if n.startswith("blur_")), key=lambda n: scores[n]["psnr"])
    return {"blur_sigma": float(name.removeprefix("blur_")), "blur_psnr": scores[name]["psnr"], "blur_mse": scores[name]["mse"]}


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    """The freshly initialised TrainState of the configured autoencoder (also a restore template)."""
    model = autoencoder(config.options.arch, config.options.code_size, info.image_shape)
    return create_train_state(model, optimizer(config, steps_per_epoch), key, jnp.zeros((1, *info.image_shape)))


def train_step(config: Config, info):
    return make_train_step(objective(config), config.micro_batches)


def eval_step(config: Config, info):
    return make_state_eval_step(objective(config))


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    test = evaluate(make_eval_step(objective(config), state.apply_fn), state.params, data.test, key)
    results = {"test_mse": test["mse"], "test_psnr": test["psnr"], "loss": training_loss(config)}
    if corruption(config) is not no_corruption:
        scores = restoration_metrics({"input": lambda x: x, **blur_restorers()}, corruption(config), data.test, key, ssim=False)
        results.update(input_psnr=scores["input"]["psnr"], input_mse=scores["input"]["mse"], **best_blur(scores))
    return results


def restore(state, corrupted: jax.Array) -> jax.Array:
    """The trained autoencoder's output images, float32 in [0, 1], for corrupted inputs."""
    return jax.nn.sigmoid(state.apply_fn({"params": state.params}, corrupted))


def pictures(config: Config, state, data, key: jax.Array, folder, history: list[dict]) -> None:
    """samples.png: 10 test images, their corrupted inputs, and the reconstructions."""
    clean = to_float(jnp.asarray(data.test.gather(range(min(10, len(data.test))))["image"]))
    corrupted = corruption(config)(key, clean)
    save_grid(folder / "samples.png", [clean, corrupted, restore(state, corrupted)])


def check_data(config: Config, info) -> None:
    height, width, _ = info.image_shape
    if config.options.arch == "conv" and (height % CELL or width % CELL):
        raise ValueError(
            f"the conv autoencoder needs H and W multiples of {CELL}, got {height}x{width}: use --arch mlp, or crop or pad the images"
        )


for _name, _options, _summary in (
    ("ae", AutoencoderOptions, "compressing autoencoder: images -> a small code -> images, against PCA"),
    ("dae", DenoisingOptions, "denoising autoencoder: noisy images -> clean images, against the noisy input and a gaussian blur"),
):
    register(
        ModelSpec(
            name=_name,
            summary=_summary,
            options=_options,
            init=init,
            train_step=train_step,
            eval_step=eval_step,
            evaluate=evaluate_run,
            pictures=pictures,
            check_data=check_data,
        )
    )
