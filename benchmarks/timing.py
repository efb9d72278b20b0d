"""Wall-clock windows: calibrate, warm up, then alternate two runners window by window.

A runner is `window(n) -> seconds`: it does n units of work (a dispatch of K steps, one PyTorch
step, one matmul) and waits for the device only once, at the end. Rates are medians over windows.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp

Window = Callable[[int], float]


@dataclasses.dataclass(frozen=True)
class Runner:
    """`window(n)` does n units of `steps` steps each."""

    window: Window
    steps: int = 1


def units_for(runner: Runner, seconds: float) -> int:
    """How many units make a window of about `seconds` (at least 1), timed on one unit after
    a first (warm-up) one."""
    runner.window(1)
    return max(1, round(seconds / runner.window(1)))


def alternate(runners: list[Runner], windows: int, seconds: float) -> list[list[float]]:
    """Steps per second of each runner in each of `windows` windows, run in turn (a, b, a, b, ...).

    Every runner is calibrated to windows of about `seconds` and warmed up by one window first.
    """
    units = [units_for(r, seconds) for r in runners]
    for runner, n in zip(runners, units):
        runner.window(n)
    rates: list[list[float]] = [[] for _ in runners]
    for _ in range(windows):
        for runner, n, out in zip(runners, units, rates):
            out.append(n * runner.steps / runner.window(n))
    return rates


def first_calls(runner: Runner, calls: int) -> float:
    """Seconds of the first `calls` units of a fresh runner, each waited for: for a torch.compile'd
    step, the tracing and compiling its first call does (and what a later call records, such as
    CUDA graphs), with `calls` steps of ordinary work, small beside them."""
    return sum(runner.window(1) for _ in range(calls))


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable, *args):
    """(fn(*args), seconds)."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def jax_calls(fn: Callable, *args) -> Window:
    """n calls of the compiled `fn(*args)`, blocking on all outputs at the end."""

    def window(n: int) -> float:
        start = time.perf_counter()
        jax.block_until_ready([fn(*args) for _ in range(n)])
        return time.perf_counter() - start

    return window


def jax_train(compiled: Callable, state, images, index_sets: list, step_key) -> Window:
    """n dispatches of `compiled(state, images, indices, step_key)`, threading the (donated) state
    through and cycling over `index_sets`; blocks on the state at the end."""
    holder = [state]

    def window(n: int) -> float:
        start = time.perf_counter()
        state = holder[0]
        for i in range(n):
            state, _ = compiled(state, images, index_sets[i % len(index_sets)], step_key)
        holder[0] = jax.block_until_ready(state)
        return time.perf_counter() - start

    return window


def torch_calls(fn: Callable[[], None], synchronize: Callable[[], None]) -> Window:
    """n calls of `fn()`, then `synchronize()`."""

    def window(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        synchronize()
        return time.perf_counter() - start

    return window


def jax_matmul(size: int) -> Window:
    """n float32 (size, size) matmuls (2 * size^3 FLOPs each), chained: x <- q @ x with q
    orthogonal, so each waits for the previous one and the values neither grow nor vanish.
    Compiled here, so at the matmul precision in effect where it is called."""
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (size, size), jnp.float32))
    matmul = jax.jit(jnp.matmul).lower(q, q).compile()
    holder = [q]

    def window(n: int) -> float:
        start = time.perf_counter()
        x = holder[0]
        for _ in range(n):
            x = matmul(q, x)
        holder[0] = jax.block_until_ready(x)
        return time.perf_counter() - start

    return window
