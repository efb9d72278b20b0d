"""The benchmarked models on the JAX side, built from jaxae's own configs and factories.

Each case is a config (batch size, learning rate, steps per dispatch and unrolling as `fit` would
use them, via `jaxae.runs.common.fit_options`), its initial state, its train step (the library's
`make_train_step(objective)` or `jaxae.train.gan.train_step`) and a jittable eval step
`eval_step(state, batch, key) -> outputs`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxae.config import Config, make_config
from jaxae.models.autoencoder import IMAGE_SHAPE
from jaxae.models.gan import gan
from jaxae.models.superres import superres
from jaxae.noise import Noise
from jaxae.objectives import reconstruction, vae
from jaxae.runs import autoencoder as ae_runs
from jaxae.runs import superres as sr_runs
from jaxae.runs import vae as vae_runs
from jaxae.runs.common import fit_options, optimizer
from jaxae.train import gan as gan_train
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_train_step

TRAIN_IMAGES = 60_000  # an MNIST-sized training set: sets the optimizer's steps per epoch
CONSTANT = {"schedule": "constant"}  # Adam at a fixed rate, as the PyTorch reference
SPECS: dict[str, dict] = {
    "ae-conv": {"model": "ae", "arch": "conv"},
    "ae-mlp": {"model": "ae", "arch": "mlp"},
    "dae-conv": {"model": "dae", "arch": "conv"},
    "dae-mlp": {"model": "dae", "arch": "mlp"},
    "sr": {"model": "sr"},
    # the pytorch/examples VAE: batch 128, Adam 1e-3 (jaxae's own default is batch 32, 3e-3)
    "vae": {"model": "vae", "batch_size": 128, "learning_rate": 1e-3},
    "gan": {"model": "gan", "arch": "conv"},
}


@dataclasses.dataclass
class JaxCase:
    """One model's benchmark: config, initial state, train step, eval step, K and unroll."""

    name: str
    config: Config
    state: Any
    train_step: Callable
    eval_step: Callable
    steps_per_dispatch: int
    unroll: bool

    @property
    def params(self) -> int:
        """Number of trained parameters (both networks for the GAN)."""
        tree = (self.state.generator.params, self.state.discriminator.params) if self.config.model == "gan" else self.state.params
        return sum(x.size for x in jax.tree.leaves(tree))


def config_of(name: str) -> Config:
    spec = dict(SPECS[name])
    return make_config(spec.pop("model"), **{**CONSTANT, **spec})


def _supervised_case(config: Config, key: jax.Array):
    """(state, objective) of an ae, dae, sr or vae config."""
    steps_per_epoch = TRAIN_IMAGES // config.batch_size
    if config.model == "vae":
        state = vae_runs.initial_state(config, steps_per_epoch, key)
        return state, vae(config.beta, vae_runs.uses_binarization(config))
    if config.model == "sr":
        corrupt = sr_runs.corruption(config)
        example = corrupt(key, jnp.zeros((1, *IMAGE_SHAPE)))
        model = superres(config.sr_input, config.factor)
        state = create_train_state(model, optimizer(config, steps_per_epoch), key, example)
    else:
        corrupt = ae_runs.corruption(config)
        state = ae_runs.initial_state(config, steps_per_epoch, key)
    return state, reconstruction(corrupt, config.training_loss)


def _generate(state, batch, key):
    """The GAN's eval step: as many generated images as `batch` holds."""
    return gan_train.generate(state, gan_train.sample_latents(key, batch.shape[0], state.latent), averaged=True)


def build(name: str, key: jax.Array) -> JaxCase:
    """The JAX case `name` (a key of SPECS), its parameters drawn from `key`."""
    config = config_of(name)
    if config.model == "gan":
        tx = optimizer(config, TRAIN_IMAGES // config.batch_size)
        state = gan_train.create_gan_state(*gan(config.arch), tx, tx, key, config.latent, ema_decay=config.ema_decay)
        train_step, eval_step = gan_train.train_step, _generate
    else:
        state, objective = _supervised_case(config, key)
        train_step, params_eval = make_train_step(objective), make_eval_step(objective, state.apply_fn)

        def eval_step(state, batch, key):
            return params_eval(state.params, batch, key)

    options = fit_options(config)
    return JaxCase(name, config, state, train_step, eval_step, options["steps_per_dispatch"], options["unroll"])


def torch_options(config: Config) -> dict:
    """Keyword arguments of `benchmarks.torch_models.build` for the same model."""
    options = {"loss": config.training_loss, "noise_sigma": None, "factor": config.factor, "latent": config.latent, "b1": config.adam_b1,
               "ema_decay": config.ema_decay}
    if config.model == "dae":
        noise = Noise.parse(config.noise)
        if noise.kind != "gaussian":
            raise ValueError(f"the PyTorch DAE has gaussian noise only, not {noise.kind}")
        options["noise_sigma"] = noise.level
    return options
