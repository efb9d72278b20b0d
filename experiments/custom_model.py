"""A model defined outside the package, registered, and trained by jaxae's own runner and CLI.

A sparse autoencoder: an MLP autoencoder whose ReLU code pays an L1 penalty, so that few of its
units are active per image. One module, one objective, one spec and a `register` call are all it
takes; the run writes results.json, metrics.jsonl, checkpoints and samples.png like a built-in,
resumes with --resume, and `--help` lists its options.

    .venv/bin/python experiments/custom_model.py --epochs 2 --workdir runs/sparse_ae
    .venv/bin/python experiments/custom_model.py --help
"""

from __future__ import annotations

import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxae import cli, losses, registry
from jaxae.config import NON_NEGATIVE, POSITIVE_INT, Config, option
from jaxae.objectives import to_float
from jaxae.outputs import save_grid
from jaxae.runs.common import optimizer
from jaxae.train.evaluate import evaluate
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_state_eval_step, make_train_step


class SparseAutoencoder(nn.Module):
    """Images (N, H, W, C) in [0, 1] -> (pixel logits of the same shape, ReLU codes (N, code_size))."""

    image_shape: tuple[int, int, int]
    code_size: int
    hidden: int = 256

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
        code = nn.relu(nn.Dense(self.code_size)(h))
        h = nn.relu(nn.Dense(self.hidden)(code))
        return nn.Dense(math.prod(self.image_shape))(h).reshape(x.shape[0], *self.image_shape), code


def sparse_reconstruction(sparsity: float):
    """Per-pixel BCE plus sparsity x the mean L1 norm of the code; metrics: loss, mse, active
    (the share of code units above zero)."""

    def objective(params, apply_fn, batch, key):
        clean = to_float(batch["image"])
        logits, code = apply_fn({"params": params}, clean)
        loss = jnp.mean(losses.bce_with_logits(logits, clean)) + sparsity * jnp.mean(jnp.sum(jnp.abs(code), axis=-1))
        mse = jnp.mean(losses.mse(jax.nn.sigmoid(logits), clean))
        return loss, {"loss": loss, "mse": mse, "active": jnp.mean(code > 0)}

    return objective


@dataclasses.dataclass(frozen=True)
class SparseOptions:
    """The sparse autoencoder's own settings."""

    code_size: int = option(64, "code units", range=POSITIVE_INT)
    sparsity: float = option(1e-3, "weight of the code's L1 norm in the loss", range=NON_NEGATIVE)


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    model = SparseAutoencoder(info.image_shape, config.options.code_size)
    return create_train_state(model, optimizer(config, steps_per_epoch), key, jnp.zeros((1, *info.image_shape)))


def train_step(config: Config, info):
    return make_train_step(sparse_reconstruction(config.options.sparsity), config.micro_batches)


def eval_step(config: Config, info):
    return make_state_eval_step(sparse_reconstruction(config.options.sparsity))


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    scores = evaluate(make_eval_step(sparse_reconstruction(config.options.sparsity), state.apply_fn), state.params, data.test, key)
    return {"test_mse": scores["mse"], "test_active_units": scores["active"]}


def pictures(config: Config, state, data, key: jax.Array, folder, history: list[dict]) -> None:
    clean = to_float(jnp.asarray(data.test.gather(range(10))["image"]))
    save_grid(folder / "samples.png", [clean, jax.nn.sigmoid(state.apply_fn({"params": state.params}, clean)[0])])


registry.register(
    registry.ModelSpec(
        name="sparse_ae",
        summary="sparse autoencoder (experiments/custom_model.py): an L1 penalty on a ReLU code",
        options=SparseOptions,
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        evaluate=evaluate_run,
        pictures=pictures,
        defaults={"epochs": 2, "learning_rate": 3e-3},
    )
)


if __name__ == "__main__":
    sys.exit(cli.main(["train", "--model", "sparse_ae", *sys.argv[1:]]))
