"""Evaluation over a whole split, in consecutive batches gathered on the host.

Both helpers take a function `fn(params, batch, key)` (jitted here, compiled once per batch
shape: pass the same function object to reuse it) and data as a `jaxae.data.Split` or a dict of
arrays. Batches have `batch_size` examples, the last one fewer where the size does not divide N,
so every example counts once and the rest compiles separately.

- `evaluate(eval_step, ...)`: `eval_step` returns metrics averaged over its batch; the result is
  their mean over all examples. Batch i gets key `split(key, number of batches)[i]`.
- `map_examples(fn, ...)`: `fn` returns per-example outputs (B, ...); the result stacks them to
  (N, ...) numpy arrays. Batch i gets key `fold_in(key, i)` (None without a key).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.train.loop import as_split


@functools.partial(jax.jit, static_argnums=0)
def _apply(fn, params, batch, key):
    return fn(params, batch, key)


def _batches(data, batch_size: int):
    """(number of examples, batch dict of numpy arrays) of consecutive batches of `data`."""
    split = as_split(data)
    n = len(split)
    if n == 0:
        raise ValueError("nothing to evaluate: the data holds no examples")
    for begin in range(0, n, batch_size):
        stop = min(begin + batch_size, n)
        yield stop - begin, split.gather(np.arange(begin, stop))


def evaluate_tree(eval_step, params, data, key: jax.Array, batch_size: int = 1000):
    """The mean over all examples of `eval_step(params, batch, key_i)` (a pytree of batch-mean
    scalars), as device scalars."""
    n = len(as_split(data))
    size = min(batch_size, n)
    keys = jax.random.split(key, -(-n // size))
    outputs = [(count, _apply(eval_step, params, batch, k)) for (count, batch), k in zip(_batches(data, size), keys)]
    full = [metrics for count, metrics in outputs if count == size]
    mean = jax.tree.map(lambda *batch_means: jnp.mean(jnp.stack(batch_means)), *full)
    if len(full) == len(outputs):
        return mean
    count, rest = outputs[-1]
    return jax.tree.map(lambda m, r: (m * (n - count) + r * count) / n, mean, rest)


def evaluate(eval_step, params, data, key: jax.Array, batch_size: int = 1000) -> dict:
    """`evaluate_tree` of a flat dict of metrics, as host floats."""
    return {k: float(v) for k, v in evaluate_tree(eval_step, params, data, key, batch_size).items()}


def map_examples(fn, params, data, key: jax.Array | None = None, batch_size: int = 1000):
    """`fn(params, batch, key_i)` per example over all of `data`: its outputs stacked to (N, ...)."""
    outputs = [
        _apply(fn, params, batch, None if key is None else jax.random.fold_in(key, i))
        for i, (_, batch) in enumerate(_batches(data, batch_size))
    ]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(outputs))
