"""The benchmarked models on the JAX side, built from jaxae's recipes and model registry.

Each case is a recipe (jaxae/configs/bench_*.toml: batch size, learning rate, schedule), its
model's initial state, train step and eval step (`eval_step(state, batch, key) -> outputs`) from
the model's spec, and the steps per dispatch and unrolling that `fit` would use.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from jaxae import recipes, registry
from jaxae.config import Config
from jaxae.data import DataInfo
from jaxae.noise import Noise
from jaxae.runs import fit_options
from jaxae.specs.autoencoder import training_loss
from jaxae.train.parallel import train_states

TRAIN_IMAGES = 60_000  # an MNIST-sized training set: sets the optimizer's steps per epoch
DATA = DataInfo((28, 28, 1), 10, TRAIN_IMAGES, 10_000)
SPECS: dict[str, str] = {  # case name -> recipe
    "ae-conv": "bench_ae_conv",
    "ae-mlp": "bench_ae_mlp",
    "dae-conv": "bench_dae_conv",
    "dae-mlp": "bench_dae_mlp",
    "sr": "bench_sr",
    "vae": "bench_vae",
    "gan": "bench_gan",
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
        """Number of trained parameters (of every network the state holds)."""
        return sum(x.size for network in train_states(self.state) for x in jax.tree.leaves(network.params))


def config_of(name: str) -> Config:
    return recipes.config(SPECS[name])


def build(name: str, key: jax.Array) -> JaxCase:
    """The JAX case `name` (a key of SPECS), its parameters drawn from `key`."""
    config = config_of(name)
    spec = registry.get(config.model)
    state = spec.init(config, DATA, TRAIN_IMAGES // config.batch_size, key)
    options = fit_options(config)
    return JaxCase(
        name, config, state, spec.train_step(config, DATA), spec.eval_step(config, DATA), options["steps_per_dispatch"], options["unroll"]
    )


def arch(config: Config) -> str:
    """The model's architecture option ("conv" for models without one, as the SR network)."""
    return getattr(config.options, "arch", "conv")


def torch_options(config: Config) -> dict:
    """Keyword arguments of `benchmarks.torch_models.build` for the same model."""
    o = config.options
    options = {
        "loss": training_loss(config) if config.model in ("ae", "dae") else "mse",
        "noise_sigma": None,
        "factor": getattr(o, "factor", 2),
        "latent": getattr(o, "latent", 20),
        "b1": config.adam_b1,
        "ema_decay": getattr(o, "ema_decay", 0.0),
    }
    if config.model == "dae":
        noise = Noise.parse(o.noise)
        if noise.kind != "gaussian":
            raise ValueError(f"the PyTorch DAE has gaussian noise only, not {noise.kind}")
        options["noise_sigma"] = noise.level
    return options
