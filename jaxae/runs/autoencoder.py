"""Compressing (ae) and denoising (dae) autoencoders: train, evaluate on the test split, picture."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import baselines
from jaxae.config import Config
from jaxae.models.autoencoder import autoencoder
from jaxae.noise import Noise
from jaxae.objectives import no_corruption, reconstruction, to_float
from jaxae.outputs import save_grid
from jaxae.runs.common import RunDir, fit_options, load_split, optimizer, restoration_metrics, run_keys
from jaxae.train.loop import evaluate, fit
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_train_step


def corruption(config: Config):
    """The input corruption of a model: none for "ae", the configured noise for "dae"."""
    return Noise.parse(config.noise) if config.model == "dae" else no_corruption


def best_blur(corrupt, images: np.ndarray, key: jax.Array, sigmas=(0.5, 0.75, 1.0, 1.5, 2.0)) -> dict:
    """The gaussian blur that restores the test images best, chosen on them (an optimistic baseline)."""
    scores = {s: restoration_metrics(partial(baselines.gaussian_blur, sigma=s), corrupt, images, key) for s in sigmas}
    sigma = max(scores, key=lambda s: scores[s]["psnr"])
    return {"blur_sigma": sigma, "blur_psnr": scores[sigma]["psnr"], "blur_mse": scores[sigma]["mse"]}


def train_and_evaluate(config: Config, workdir: str) -> dict:
    """Trains the configured autoencoder, writes workdir/{metrics.jsonl,results.json,samples.png}."""
    run = RunDir(workdir, config)
    keys = run_keys(config)
    train_images, _ = load_split(config, "train")
    test_images, _ = load_split(config, "test")
    corrupt = corruption(config)
    objective = reconstruction(corrupt, config.loss)
    model = autoencoder(config.arch, config.code_size)
    tx = optimizer(config, len(train_images) // config.batch_size)
    state = run.start(create_train_state(model, tx, keys["init"], jnp.zeros((1, *train_images.shape[1:]))))
    result = fit(
        state,
        make_train_step(objective),
        train_images,
        key=keys["train"],
        on_log=run.log,
        **fit_options(config),
    )
    params = result.state.params
    test = evaluate(make_eval_step(objective, model.apply), params, test_images, keys["eval"])
    results = {
        "test_mse": test["mse"],
        "test_psnr": test["psnr"],
        "steps_per_second": result.steps_per_second,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "train_images": len(train_images),
        "test_images": len(test_images),
    }
    clean = to_float(jnp.asarray(test_images[:10]))
    corrupted = corrupt(keys["pictures"], clean)
    restored = jax.nn.sigmoid(model.apply({"params": params}, corrupted))
    if config.model == "dae":
        inputs = restoration_metrics(lambda x: x, corrupt, test_images, keys["eval"])
        results.update(input_psnr=inputs["psnr"], input_mse=inputs["mse"])
        results.update(best_blur(corrupt, test_images, keys["eval"]))
    save_grid(run.path / "samples.png", [clean, corrupted, restored])
    return run.finish(results)
