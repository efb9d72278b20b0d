"""Training state: Flax's TrainState (step, apply_fn, params, tx, opt_state)."""

from __future__ import annotations

import jax
import optax
from flax import linen as nn
from flax.training.train_state import TrainState


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array, *example_inputs) -> TrainState:
    """Initialises `model` on `example_inputs` (shapes only matter) with parameters drawn from `key`.

    The initialisation is jitted: one compilation instead of one per layer operation.
    """
    params = jax.jit(model.init)(key, *example_inputs)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx)
