"""Step factories: one objective gives a train step and an eval step with the shared signatures

    train_step(state, batch, key) -> (state, metrics)
    eval_step(params, batch, key) -> metrics

`state` is a `flax.training.train_state.TrainState`; metrics are dicts of float32 scalars.
"""
from __future__ import annotations

import jax

from jaxae.objectives import Objective


def make_train_step(objective: Objective):
    """One gradient step of `objective` on `batch` with the optimizer held in `state`."""

    def train_step(state, batch, key):
        def loss_fn(params):
            return objective(params, state.apply_fn, batch, key)

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), metrics

    return train_step


def make_eval_step(objective: Objective, apply_fn):
    """The metrics of `objective` on `batch`, without gradients."""

    def eval_step(params, batch, key):
        return objective(params, apply_fn, batch, key)[1]

    return eval_step
