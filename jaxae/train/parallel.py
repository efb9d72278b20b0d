"""How `fit` lays a run out on its devices: jax.jit over a Mesh (default), or jax.pmap.

Both run K steps per dispatch in a `lax.scan`, with the step key `fold_in(step_key, state.step)`
and the global batch `data[indices]` (every array of the data pytree indexed alike) split over
the devices, and they give the same numbers.

jit: each batch is sharded over the mesh's "data" axis; state, data and outputs are
replicated. XLA partitions the step, so it computes exactly the global batch's step; random
draws do not depend on the number of devices, since threefry keys are partitionable.

pmap: each device runs the step on its shard of the batch. Two things make that the global
batch's step:

- Gradients. Every flax `TrainState` in the state gets an `apply_fn` whose parameters'
  gradient is averaged over the devices (`pmean`) on the way back. A step's loss is a mean over
  its batch, so the mean of the shards' gradients is the global batch's gradient, and
  `apply_gradients` makes the same update on every device. Metrics are averaged the same way.
- Random draws. The step key becomes a shard key (`shard_key`) that knows the device's index d:
  a draw of the shard's shape (b, ...) from it equals rows d*b .. (d+1)*b - 1 of the same draw
  of the global shape (n*b, ...) from the plain key. So every random draw in a step must have
  the batch as its leading axis, as all of jaxae's do (noise, binarization, eps, latents).

Both reduce the gradient over the devices in an order that depends on their number, so runs on 1
and 4 devices drift apart by float rounding, which training can amplify (a ReLU unit that flips
on one side only). With micro-batches (`micro_batch_grad`, `--micro-batches K`), every step sums
K fixed micro-batch gradients in a fixed order and is bit-identical on any device count dividing K.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState
from jax import lax
from jax.extend import random as jex_random
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxae.config import PARALLEL

TrainStep = Callable[[Any, jax.Array, jax.Array], tuple[Any, dict]]
AXIS = "data"


class Layout(NamedTuple):
    """One way of running `fit`'s dispatches on a mesh's devices.

    multi_step(state, data, indices, step_key) -> (state, metrics of each of the K steps);
    place(tree) puts the state or the data on the devices, batches(indices (K, B)) one
    dispatch's batch indices, key(step_key) the step key; local(tree) is the first device's
    copy of a placed tree or of multi_step's outputs, as a plain single-device pytree.
    """

    multi_step: Callable
    place: Callable
    batches: Callable
    key: Callable
    local: Callable


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh named "data" over `devices` (default: all of them, of every process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def layout(parallel: str, train_step: TrainStep, mesh: Mesh, unroll: bool = False) -> Layout:
    """The Layout named by `parallel` ("jit" or "pmap") for `train_step` on `mesh`."""
    if parallel not in PARALLEL:
        raise ValueError(f"unknown parallel {parallel!r}: use one of {', '.join(PARALLEL)}")
    return (jit_layout if parallel == "jit" else pmap_layout)(train_step, mesh, unroll)


def run_steps(body, state, indices: jax.Array, unroll: bool):
    """`body(state, batch_indices) -> (state, metrics)` over the K rows of `indices`: a
    `lax.scan`, or with `unroll` K copies of the body as straight-line code (a scan with
    unroll=True still leaves a one-trip loop when K is 1, and the slow loop body with it)."""
    if not unroll:
        return lax.scan(body, state, indices)
    metrics = []
    for batch_indices in indices:
        state, step_metrics = body(state, batch_indices)
        metrics.append(step_metrics)
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)


def make_multi_step(train_step: TrainStep, mesh: Mesh, unroll: bool = False):
    """The jit dispatch: (state, data, indices (K, B), step_key) -> (state, metrics (K,)), where
    `data` is a pytree of arrays (N, ...) and each step's batch is every array at its row of indices.

    `unroll` writes the K steps out as straight-line code instead of a loop: XLA:CPU runs the
    gradients of `nn.Conv` and transposed convolutions inside a loop 10-30x slower (jax#12868).
    Compile time grows with K, so keep K small (8) when unrolling.
    """
    batch_sharding = NamedSharding(mesh, P(AXIS))

    def multi_step(state, data, indices, step_key):
        def body(state, batch_indices):
            key = jax.random.fold_in(step_key, state.step)
            batch = jax.tree.map(lambda x: lax.with_sharding_constraint(x[batch_indices], batch_sharding), data)
            return train_step(state, batch, key)

        return run_steps(body, state, indices, unroll)

    return jax.jit(multi_step, donate_argnums=0, out_shardings=NamedSharding(mesh, P()))


def jit_layout(train_step: TrainStep, mesh: Mesh, unroll: bool = False) -> Layout:
    """Replicated state and data, batches sharded by XLA (works across processes too)."""
    replicated = NamedSharding(mesh, P())

    def place(tree):  # from host copies, since other processes' devices take no local array
        return jax.device_put(jax.device_get(tree), replicated)

    def key(step_key):
        return jax.random.wrap_key_data(place(jax.random.key_data(step_key)), impl=jax.random.key_impl(step_key))

    def local(tree):  # a copy, since the next dispatch donates the state's buffers
        return jax.tree.map(lambda x: jnp.copy(x.addressable_data(0)), tree)

    return Layout(make_multi_step(train_step, mesh, unroll), place, place, key, local)


def pmap_layout(train_step: TrainStep, mesh: Mesh, unroll: bool = False) -> Layout:
    """One copy of state and data per device (leading axis), each device's columns of the indices."""
    if jax.process_count() > 1:
        raise ValueError("--parallel pmap runs in one process: use the default --parallel jit across processes")
    if not jax.config.jax_threefry_partitionable:
        raise ValueError("--parallel pmap needs jax_threefry_partitionable (the default) to draw as jit does")
    stacked = NamedSharding(mesh, P(AXIS))
    n = mesh.size

    def place(tree):
        return jax.device_put(jax.tree.map(lambda x: np.broadcast_to(x, (n, *np.shape(x))), tree), stacked)

    def batches(indices):
        return np.asarray(indices).reshape(indices.shape[0], n, -1).swapaxes(0, 1)

    def local(tree):
        return jax.tree.map(lambda x: x.addressable_data(0)[0], tree)

    return Layout(make_pmap_multi_step(train_step, mesh, unroll), place, batches, lambda key: key, local)


def make_pmap_multi_step(train_step: TrainStep, mesh: Mesh, unroll: bool = False):
    """The pmap dispatch: per device (state, data, indices (K, B/n), step_key) -> (state, metrics (K,))."""
    step = sync_gradients(train_step, AXIS)

    def multi_step(state, data, indices, step_key):
        shard = lax.axis_index(AXIS)

        def body(state, batch_indices):
            key = shard_key(jax.random.fold_in(step_key, state.step), shard)
            state, metrics = step(state, jax.tree.map(lambda x: x[batch_indices], data), key)
            return state, lax.pmean(metrics, AXIS)

        return run_steps(body, state, indices, unroll)

    return jax.pmap(multi_step, AXIS, in_axes=(0, 0, 0, None), donate_argnums=0, devices=list(mesh.devices.flat))


def sync_gradients(train_step: TrainStep, axis_name: str) -> TrainStep:
    """`train_step` whose TrainStates' parameter gradients are averaged over `axis_name`."""

    @jax.custom_vjp
    def synced(variables):
        return variables

    synced.defvjp(lambda variables: (variables, None), lambda _, grads: (lax.pmean(grads, axis_name),))

    def wrap(apply_fn):
        return lambda variables, *args, **kwargs: apply_fn(synced(variables), *args, **kwargs)

    def step(state, batch, key):
        originals = train_states(state)
        wrapped = _map_train_states(lambda s: s.replace(apply_fn=wrap(s.apply_fn)), state)
        new_state, metrics = train_step(wrapped, batch, key)
        restore = iter(originals)
        return _map_train_states(lambda s: s.replace(apply_fn=next(restore).apply_fn), new_state), metrics

    return step


def micro_batch_grad(loss_fn: Callable, params, inputs, key: jax.Array, micro_batches: int):
    """`jax.grad(loss_fn, has_aux=True)(params, inputs, key)` for a `loss_fn` that averages over
    the leading (batch) axis of every array in `inputs`, computed so that the result does not
    depend on the device count: (grads, aux).

    The batch is cut into `micro_batches` equal pieces; piece i is computed alone, with the key
    `shard_key(key, i)` (its rows of every global draw), on one of the devices of the current mesh
    (`jax.set_mesh`, as `fit` sets; none: one device), whose number must divide `micro_batches`.
    The pieces' gradients and aux (scalar means) are gathered and averaged in the order of i. With
    one micro-batch it is plain `jax.grad` on the whole batch.
    """
    if micro_batches == 1:
        return jax.grad(loss_fn, has_aux=True)(params, inputs, key)
    context = jax.sharding.get_abstract_mesh()
    mesh = data_mesh(jax.devices()[:1]) if context.empty else context
    devices = mesh.shape[AXIS]
    if micro_batches % devices:
        raise ValueError(f"--micro-batches {micro_batches} does not divide over {devices} devices: use a multiple of {devices}")
    local = micro_batches // devices
    batch_size = jax.tree.leaves(inputs)[0].shape[0]
    if batch_size % micro_batches:
        raise ValueError(f"batch size {batch_size} does not split into {micro_batches} micro-batches: use a multiple of {micro_batches}")

    def on_device(params, inputs, key):
        first = lax.axis_index(AXIS) * local
        pieces = jax.tree.map(lambda x: x.reshape(local, -1, *x.shape[1:]), inputs)
        results = [
            jax.grad(loss_fn, has_aux=True)(params, jax.tree.map(lambda x, j=j: x[j], pieces), shard_key(key, first + j))
            for j in range(local)  # straight-line, so every piece compiles as the same computation
        ]
        stacked = jax.tree.map(lambda *xs: lax.all_gather(jnp.stack(xs), AXIS, tiled=True), *results)
        return jax.tree.map(_mean_in_order, stacked)

    batch_spec = jax.tree.map(lambda _: P(AXIS), inputs)
    return jax.shard_map(on_device, mesh=mesh, in_specs=(P(), batch_spec, P()), out_specs=P(), check_vma=False)(params, inputs, key)


def _mean_in_order(stacked: jax.Array) -> jax.Array:
    """The mean over the leading axis, summed strictly from first to last."""
    total = stacked[0]
    for x in stacked[1:]:
        total = total + x
    return total / stacked.shape[0]


def _is_train_state(x) -> bool:
    return isinstance(x, TrainState)


def train_states(state) -> list[TrainState]:
    found = [x for x in jax.tree.leaves(state, is_leaf=_is_train_state) if _is_train_state(x)]
    if not found:
        raise TypeError("--parallel pmap needs a state made of flax TrainStates, to average their gradients")
    return found


def _map_train_states(fn, state):
    return jax.tree.map(lambda x: fn(x) if _is_train_state(x) else x, state, is_leaf=_is_train_state)


def _shard_split(key: jax.Array, shape) -> jax.Array:
    threefry = jex_random.threefry_prng_impl.split(key[:2], shape)
    return jnp.concatenate([threefry, jnp.broadcast_to(key[2:], (*shape, 1))], axis=-1)


def _shard_fold_in(key: jax.Array, data) -> jax.Array:
    return jnp.concatenate([jex_random.threefry_prng_impl.fold_in(key[:2], data), key[2:]])


def _shard_seed(seed) -> jax.Array:
    return jnp.concatenate([jex_random.threefry_prng_impl.seed(seed), jnp.zeros(1, jnp.uint32)])


def _shard_random_bits(key: jax.Array, bit_width: int, shape) -> jax.Array:
    """JAX's partitionable threefry bits (element i from the counter i), counters offset by shard * size."""
    size = math.prod(shape)
    low = (lax.iota(jnp.uint32, size) + key[2] * jnp.uint32(size)).reshape(shape)
    bits_hi, bits_lo = jex_random.threefry2x32_p.bind(key[0], key[1], jnp.zeros(shape, jnp.uint32), low)
    dtype = jnp.dtype(f"uint{bit_width}")
    if bit_width == 64:
        return (bits_hi.astype(dtype) << 32) | bits_lo.astype(dtype)
    return (bits_hi ^ bits_lo).astype(dtype)


SHARD_THREEFRY = jex_random.define_prng_impl(
    key_shape=(3,),
    seed=_shard_seed,
    split=_shard_split,
    random_bits=_shard_random_bits,
    fold_in=_shard_fold_in,
    name="shard_threefry2x32",
    tag="shfry",
)


def shard_key(key: jax.Array, shard: int | jax.Array) -> jax.Array:
    """A key whose draws of shape (b, ...) are rows shard*b .. of `key`'s draws of shape (n*b, ...).

    `key` is a threefry2x32 key (the default). Split and fold_in act as on `key` and keep `shard`.
    Holds under jax_threefry_partitionable (the default), for draws under 2**32 elements in all.
    """
    data = jnp.concatenate([jax.random.key_data(key), jnp.asarray(shard, jnp.uint32)[None]])
    return jax.random.wrap_key_data(data, impl=SHARD_THREEFRY)
