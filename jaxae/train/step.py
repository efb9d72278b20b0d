"""Step factories: one objective gives a train step and an eval step with the shared signatures

    train_step(state, batch, key) -> (state, metrics)
    eval_step(params, batch, key) -> metrics

`state` is a `flax.training.train_state.TrainState`; metrics are dicts of float32 scalars.
"""

from __future__ import annotations

from jaxae.objectives import Objective
from jaxae.train.parallel import micro_batch_grad


def make_train_step(objective: Objective, micro_batches: int = 1, with_step: bool = False):
    """One gradient step of `objective` on `batch` with the optimizer held in `state`; with
    `micro_batches` > 1, its gradient summed in a fixed order over that many pieces of the batch
    (`jaxae.train.parallel.micro_batch_grad`: the same bits on any device count dividing it).
    `with_step` passes the state's step to the objective as the keyword `step` (for schedules
    inside the objective, such as the VAE's KL warm-up)."""

    def train_step(state, batch, key):
        def loss_fn(params, batch, key):
            if with_step:
                return objective(params, state.apply_fn, batch, key, step=state.step)
            return objective(params, state.apply_fn, batch, key)

        grads, metrics = micro_batch_grad(loss_fn, state.params, batch, key, micro_batches)
        return state.apply_gradients(grads=grads), metrics

    return train_step


def make_eval_step(objective: Objective, apply_fn):
    """The metrics of `objective` on `batch`, without gradients."""

    def eval_step(params, batch, key):
        return objective(params, apply_fn, batch, key)[1]

    return eval_step


def make_state_eval_step(objective: Objective):
    """`step(state, batch, key) -> metrics` of `objective` with the state's parameters and
    apply_fn, without gradients: the eval step of a model spec."""

    def eval_step(state, batch, key):
        return objective(state.params, state.apply_fn, batch, key)[1]

    return eval_step
