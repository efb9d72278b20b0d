"""The one training loop, and evaluation over a whole split.

The dataset lives on the device as uint8 (N, H, W, C). Each epoch is a permutation drawn from
`fold_in(data_key, epoch)`; each dispatch runs `steps_per_dispatch` steps in a `lax.scan`, the
batch gathered by index inside it and the step key `fold_in(step_key, state.step)`. So the run
is a pure function of (initial state, data, key): resuming from a saved state at step s replays
exactly the steps after s. Metrics stay on the device until a log point (the end of an epoch).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from jaxae.data import epoch_permutation

TrainStep = Callable[[Any, jax.Array, jax.Array], tuple[Any, dict]]


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or Inf loss."""


@dataclasses.dataclass
class FitResult:
    """The trained state, one metrics record per log point, and timings (seconds, steps/s)."""

    state: Any
    history: list[dict]
    compile_seconds: float
    train_seconds: float
    steps: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds else float("nan")


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (at least 1)."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _mean_tree(trees: list) -> dict:
    return jax.tree.map(lambda *xs: float(np.mean(xs)), *jax.device_get(trees))


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh named "data" over `devices` (default: all of them)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def make_multi_step(train_step: TrainStep, mesh: Mesh, unroll: bool = False):
    """(state, images, indices (K, B), step_key) -> (state, metrics averaged over the K steps).

    `unroll` writes the K steps out as straight-line code instead of a loop: XLA:CPU runs the
    gradients of `nn.Conv` and transposed convolutions inside a loop 10-30x slower (jax#12868).
    Compile time grows with K, so keep K small (8) when unrolling.

    Each batch is sharded over the mesh's "data" axis; state, images and outputs are replicated.
    Random draws are the same whatever the number of devices (threefry keys are partitionable).
    """
    batch_sharding = NamedSharding(mesh, P("data"))

    def multi_step(state, images, indices, step_key):
        def body(state, batch_indices):
            key = jax.random.fold_in(step_key, state.step)
            batch = jax.lax.with_sharding_constraint(images[batch_indices], batch_sharding)
            return train_step(state, batch, key)

        state, metrics = jax.lax.scan(body, state, indices, unroll=unroll)
        return state, jax.tree.map(jnp.mean, metrics)

    return jax.jit(multi_step, donate_argnums=0, out_shardings=NamedSharding(mesh, P()))


def fit(
    state,
    train_step: TrainStep,
    images: jax.Array,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    steps_per_dispatch: int = 64,
    on_log: Callable[[Any, dict], None] | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
    unroll: bool = False,
) -> FitResult:
    """Trains until `epochs` epochs of `images` are done, starting from `state.step`.

    Data-parallel over `mesh` (default: every device); `batch_size` must divide by its size.
    `unroll`: see `make_multi_step` (for models with `nn.Conv` layers on CPU).

    `on_log(state, record)` runs at the end of every epoch with the epoch's mean train metrics;
    its time is not counted as training time. Raises NonFiniteError on a NaN/Inf loss.
    """
    num_examples = images.shape[0]
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {num_examples} training images")
    mesh = mesh or data_mesh()
    if batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not divide over {mesh.size} devices: pick a multiple of {mesh.size}")
    chunk = largest_divisor_at_most(steps_per_epoch, steps_per_dispatch)
    data_key, step_key = jax.random.split(key)
    replicated = NamedSharding(mesh, P())
    images, state = jax.device_put((images, state), replicated)
    multi_step = make_multi_step(train_step, mesh, unroll)
    compiled: dict[tuple, Any] = {}
    compile_seconds = train_seconds = 0.0
    history: list[dict] = []

    first_step = int(state.step)
    total = epochs * steps_per_epoch
    bar = tqdm(total=total, initial=min(first_step, total), unit="step", disable=not progress)
    for epoch in range(first_step // steps_per_epoch, epochs):
        order = epoch_permutation(data_key, num_examples, batch_size, epoch)
        order = order[int(state.step) - epoch * steps_per_epoch :]
        chunk_metrics = []
        start = time.perf_counter()
        for begin in range(0, order.shape[0], chunk):
            indices = order[begin : begin + chunk]
            if indices.shape not in compiled:
                compile_start = time.perf_counter()
                compiled[indices.shape] = multi_step.lower(state, images, indices, step_key).compile()
                compile_seconds += time.perf_counter() - compile_start
                start += time.perf_counter() - compile_start
            state, metrics = compiled[indices.shape](state, images, indices, step_key)
            chunk_metrics.append(metrics)
            bar.update(indices.shape[0])
        jax.block_until_ready(state)
        train_seconds += time.perf_counter() - start
        record = {"epoch": epoch + 1, "step": int(state.step), **_mean_tree(chunk_metrics)}
        if not np.isfinite(record.get("loss", 0.0)):
            raise NonFiniteError(f"loss became {record['loss']} by step {record['step']} (epoch {epoch + 1})")
        history.append(record)
        bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4g}")
        if on_log is not None:
            on_log(state, record)
    bar.close()
    return FitResult(state, history, compile_seconds, train_seconds, int(state.step) - first_step)


def evaluate(eval_step, params, images: jax.Array, key: jax.Array, batch_size: int = 1000) -> dict:
    """Mean of `eval_step(params, batch, key_i)` over all of `images` in equal batches (host floats).

    The batch size is lowered to a divisor of len(images) so that every image counts once.
    """
    size = largest_divisor_at_most(images.shape[0], batch_size)
    batches = jnp.asarray(images).reshape(-1, size, *images.shape[1:])

    @jax.jit
    def run(params, batches, key):
        keys = jax.random.split(key, batches.shape[0])
        metrics = jax.lax.map(lambda args: eval_step(params, *args), (batches, keys))
        return jax.tree.map(jnp.mean, metrics)

    return {k: float(v) for k, v in run(params, batches, key).items()}
