"""The one training loop.

The training data is a `jaxae.data.Split` (or a dict of arrays with a common leading axis N):
batches are pytrees such as {"image": uint8 (B, H, W, C), "label": int32 (B,)}. Each epoch is a
permutation drawn from `fold_in(shuffle_key, epoch)`; each dispatch runs `steps_per_dispatch`
steps in a `lax.scan`, each batch gathered by index inside it and each step key
`fold_in(step_key, state.step)`. So the run is a pure function of (initial state, data, key):
resuming from a saved state at step s replays exactly the steps after s.

Data up to `device_data_limit` bytes is placed on the devices once; larger data stays where it
is (host memory, a memory-mapped file, a record source) and each dispatch's batches are gathered
on the host, one dispatch ahead, and sent with it. Both index the same examples in the same
order through the same compiled step, so they give the same bits. How the steps are spread over
the devices (jit over a Mesh, or pmap) is `jaxae.train.parallel`'s business; both give the same
numbers. Metrics stay on the devices until a log point (the end of an epoch), where a NaN or Inf
in them or in the state stops the run before `on_log` sees the bad state.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxae.data import Split, epoch_permutation
from jaxae.train.checkpoint import all_finite
from jaxae.train.parallel import TrainStep, data_mesh, layout


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or Inf loss, metric or parameter."""


_STOPPED = "stopped before saving it, so every checkpoint holds good parameters; try a lower learning rate"


@dataclasses.dataclass
class FitResult:
    """The trained state, one metrics record per log point, timings (seconds, steps/s), and
    whether the data streamed from the host instead of sitting on the devices."""

    state: Any
    history: list[dict]
    compile_seconds: float
    train_seconds: float
    steps: int
    streamed: bool = False

    @property
    def steps_per_second(self) -> float | None:
        """None when no step ran (a resumed run that was already finished): JSON has no NaN."""
        return self.steps / self.train_seconds if self.train_seconds else None


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (at least 1)."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def as_split(data) -> Split:
    """`data` as a Split: a Split itself, or a dict of arrays sharing their leading axis."""
    if isinstance(data, Split):
        return data
    sizes = {k: np.shape(v)[0] for k, v in data.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the data's arrays differ in length: {sizes}")
    return Split(dict(data))


def default_device_data_limit() -> int:
    """Bytes of training data kept on the device by default: a quarter of the first device's
    memory (of the machine's memory on a CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    total = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total) // 4


def fit(
    state,
    train_step: TrainStep,
    data,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    steps_per_dispatch: int = 64,
    on_log: Callable[[Any, dict], None] | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
    unroll: bool = False,
    parallel: str = "jit",
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[Any, dict], None] | None = None,
    epoch_so_far: dict | None = None,
    shuffle_key: jax.Array | None = None,
    device_data_limit: int | None = None,
) -> FitResult:
    """Trains until `epochs` epochs of `data` are done, starting from `state.step`.

    `key` splits into the shuffle key (replaced by `shuffle_key` where given, to fix the batch
    order apart from the steps' randomness) and the step key. Data-parallel over `mesh` (default:
    every device of every process) with `parallel` "jit" or "pmap" (see `jaxae.train.parallel`);
    `batch_size` must divide by the mesh's size. `unroll`: see `parallel.make_multi_step` (for
    models with `nn.Conv` layers on CPU). Data of more than `device_data_limit` bytes (default
    `default_device_data_limit()`) streams from the host.

    `on_log(state, record)` runs at the end of every epoch with a single-device copy of the
    state and the epoch's mean train metrics; its time is not counted as training time. Raises
    NonFiniteError, before that epoch's `on_log`, on a NaN or Inf in the metrics or the state.
    The result's state is a single-device copy too.

    Within an epoch, `on_checkpoint(state, epoch_so_far)` runs at the end of the first dispatch
    that reaches each multiple of `checkpoint_every` steps (0: never), with the per-step metrics of
    the epoch so far ({name: list of floats}), after the same NaN checks. Passing those back as
    `epoch_so_far` with that state continues the run exactly, epoch means included.
    """
    split = as_split(data)
    num_examples = len(split)
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {num_examples} training images")
    mesh = mesh or data_mesh()
    if batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not divide over {mesh.size} devices: pick a multiple of {mesh.size}")
    plan = layout(parallel, train_step, mesh, unroll)
    chunk = largest_divisor_at_most(steps_per_epoch, steps_per_dispatch)
    data_key, step_key = jax.random.split(key)
    data_key = data_key if shuffle_key is None else shuffle_key
    streamed = split.nbytes > (default_device_data_limit() if device_data_limit is None else device_data_limit)
    feed = _Stream(split, plan) if streamed else _Resident(split, plan)
    first_step = step = int(state.step)
    state, step_key = plan.place(state), plan.key(step_key)
    compiled: dict[tuple, Any] = {}
    compile_seconds = train_seconds = 0.0
    history: list[dict] = []

    total = epochs * steps_per_epoch
    bar = tqdm(total=total, initial=min(first_step, total), unit="step", disable=not progress)
    for epoch in range(step // steps_per_epoch, epochs):
        order = np.asarray(epoch_permutation(data_key, num_examples, batch_size, epoch))
        order = order[step - epoch * steps_per_epoch :]
        earlier = {k: np.asarray(v, np.float32) for k, v in (epoch_so_far or {}).items()} if step == first_step else {}
        chunk_metrics = []
        start = time.perf_counter()
        for begin, (inputs, indices) in zip(range(0, order.shape[0], chunk), feed.dispatches(order, chunk)):
            shapes = jax.tree.map(np.shape, (inputs, indices))
            signature = tuple(jax.tree.leaves(shapes))
            if signature not in compiled:
                compile_start = time.perf_counter()
                with jax.set_mesh(mesh):  # the mesh `micro_batch_grad` spreads its micro-batches over
                    compiled[signature] = plan.multi_step.lower(state, inputs, indices, step_key).compile()
                compile_seconds += time.perf_counter() - compile_start
                start += time.perf_counter() - compile_start
            state, metrics = compiled[signature](state, inputs, indices, step_key)
            chunk_metrics.append(metrics)
            rows = min(chunk, order.shape[0] - begin)
            bar.update(rows)
            done = begin + rows
            if on_checkpoint and done < order.shape[0] and _crosses(step + begin, step + done, checkpoint_every):
                jax.block_until_ready(state)
                pause = time.perf_counter()
                saved, per_step = _checked(plan, state, earlier, chunk_metrics, step, done, epoch)
                on_checkpoint(saved, {k: v.tolist() for k, v in per_step.items()})
                start += time.perf_counter() - pause
        jax.block_until_ready(state)
        train_seconds += time.perf_counter() - start
        saved, per_step = _checked(plan, state, earlier, chunk_metrics, step, order.shape[0], epoch)
        step += order.shape[0]
        record = {"epoch": epoch + 1, "step": step, **{k: float(np.mean(v)) for k, v in per_step.items()}}
        history.append(record)
        bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4g}")
        if on_log is not None:
            on_log(saved, record)
    bar.close()
    return FitResult(plan.local(state), history, compile_seconds, train_seconds, step - first_step, streamed)


class _Resident:
    """The whole split placed on the devices once; each dispatch sends only its indices."""

    def __init__(self, split: Split, plan):
        self.data, self.plan = plan.place(split.load()), plan

    def dispatches(self, order: np.ndarray, chunk: int):
        """(device data, indices) per dispatch of `chunk` rows of `order` (steps, batch)."""
        for begin in range(0, order.shape[0], chunk):
            yield self.data, self.plan.batches(order[begin : begin + chunk])


class _Stream:
    """Each dispatch's examples gathered on the host, the next one while the devices run this
    one; the dispatch indexes its own (K * B, ...) examples in order."""

    def __init__(self, split: Split, plan):
        self.split, self.plan = split, plan

    def _gather(self, rows: np.ndarray):
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in self.split.gather(rows).items()}
        local = np.arange(rows.size, dtype=np.int32).reshape(rows.shape)
        return self.plan.place(flat), self.plan.batches(local)

    def dispatches(self, order: np.ndarray, chunk: int):
        pieces = [order[begin : begin + chunk] for begin in range(0, order.shape[0], chunk)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._gather, pieces[0]) if pieces else None
            for following in [*pieces[1:], None]:
                ready = pending.result()
                pending = pool.submit(self._gather, following) if following is not None else None
                yield ready


def _crosses(before: int, after: int, every: int) -> bool:
    """Whether going from step `before` to `after` reaches a multiple of `every` (0: never)."""
    return every > 0 and after // every > before // every


def _checked(plan, state, earlier: dict, chunk_metrics: list, step: int, done: int, epoch: int):
    """(single-device copy of the state, the epoch's per-step metrics so far) after `done` more
    steps from `step`; NonFiniteError on a NaN or Inf in either."""
    per_step = jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(plan.local(chunk_metrics)))
    _check_metrics(per_step, step + 1, epoch)
    saved = plan.local(state)
    _check_state(saved, step + done, epoch)
    return saved, {k: np.concatenate([earlier[k], v]) if earlier else v for k, v in per_step.items()}


def _check_metrics(per_step: dict[str, np.ndarray], first_step: int, epoch: int) -> None:
    """NonFiniteError naming the first step (counted from 1) whose metrics hold a NaN or Inf."""
    bad = ~np.all([np.isfinite(v) for v in per_step.values()], axis=0)
    if bad.any():
        i = int(np.argmax(bad))
        values = ", ".join(f"{k} {v[i]}" for k, v in per_step.items() if not np.isfinite(v[i]))
        raise NonFiniteError(f"training diverged at step {first_step + i} (epoch {epoch + 1}): {values}; {_STOPPED}")


def _check_state(state, step: int, epoch: int) -> None:
    """NonFiniteError if a float array of `state` (params, optimizer state) holds a NaN or Inf."""
    if not all_finite(state):
        raise NonFiniteError(f"the parameters or optimizer state hold NaN or Inf after step {step} (epoch {epoch + 1}); {_STOPPED}")
