"""Compressing (ae) and denoising (dae) autoencoders: train, evaluate on the test split, picture."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxae import baselines
from jaxae.config import Config
from jaxae.models.autoencoder import IMAGE_SHAPE, autoencoder
from jaxae.noise import Noise
from jaxae.objectives import no_corruption, reconstruction, to_float
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
from jaxae.train.loop import evaluate, fit
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_train_step


def corruption(config: Config):
    """The input corruption of a model: none for "ae", the configured noise for "dae"."""
    return Noise.parse(config.noise) if config.model == "dae" else no_corruption


BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)  # pixels


def blur_restorers() -> dict:
    """The gaussian-blur denoisers of the baseline, by name "blur_SIGMA"."""
    return {f"blur_{s}": partial(baselines.gaussian_blur, sigma=s) for s in BLUR_SIGMAS}


def best_blur(scores: dict) -> dict:
    """The blur with the best PSNR among `restoration_metrics` scores of `blur_restorers()`, chosen
    on the test images themselves (an optimistic baseline)."""
    name = max((n for n in scores if n.startswith("blur_")), key=lambda n: scores[n]["psnr"])
    return {"blur_sigma": float(name.removeprefix("blur_")), "blur_psnr": scores[name]["psnr"], "blur_mse": scores[name]["mse"]}


def initial_state(config: Config, steps_per_epoch: int, key: jax.Array):
    """The freshly initialised TrainState of the configured autoencoder (also a restore template)."""
    model = autoencoder(config.arch, config.code_size)
    return create_train_state(model, optimizer(config, steps_per_epoch), key, jnp.zeros((1, *IMAGE_SHAPE)))


def train_and_evaluate(config: Config, run: RunDir) -> dict:
    """Trains the configured autoencoder, writes run.path/{metrics.jsonl,results.json,samples.png}."""
    keys = run_keys(config)
    train_images, _ = load_split(config, "train")
    test_images, _ = load_split(config, "test")
    corrupt = corruption(config)
    objective = reconstruction(corrupt, config.training_loss)
    state = run.start(initial_state(config, len(train_images) // config.batch_size, keys["init"]))
    result = fit(
        state,
        make_train_step(objective, config.micro_batches),
        train_images,
        key=keys["train"],
        **run.fit_hooks(),
        **fit_options(config),
    )
    params = result.state.params
    test = evaluate(make_eval_step(objective, state.apply_fn), params, test_images, keys["eval"])
    results = {
        "test_mse": test["mse"],
        "test_psnr": test["psnr"],
        "loss": config.training_loss,
        **timings_and_sizes(result, len(train_images), len(test_images)),
    }
    clean = to_float(jnp.asarray(test_images[:10]))
    corrupted = corrupt(keys["pictures"], clean)
    restored = jax.nn.sigmoid(state.apply_fn({"params": params}, corrupted))
    if config.model == "dae":
        scores = restoration_metrics({"input": lambda x: x, **blur_restorers()}, corrupt, test_images, keys["eval"])
        results.update(input_psnr=scores["input"]["psnr"], input_mse=scores["input"]["mse"], **best_blur(scores))
    save_grid(run.path / "samples.png", [clean, corrupted, restored])
    return run.finish(results)
