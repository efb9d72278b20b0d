"""Faster random bits on CPU: the unrolled threefry lowering that JAX uses on other platforms.

On CPU, JAX lowers the `threefry2x32` hash behind every `jax.random` draw as a rolled 5-round
`while` loop (to save compile time) whose body materialises the whole uint32 state each round.
For the large draws inside training steps (the VAE's binarization bits, the DAE's noise) that
loop is a large part of the step; the unrolled lowering gives the same bits (the same hash, only
scheduled differently) in less time (measured in benchmarks/README.md).

`use_unrolled_threefry_on_cpu()` registers that lowering for CPU, for the whole program: importing
jaxae does not, the `jaxae` command and the benchmarks do. It relies on JAX internals, so it does
nothing (returns False) where they are not found; tests/test_fast_random.py checks that it takes
effect on the pinned JAX and that the bits are unchanged.
"""

from __future__ import annotations


def use_unrolled_threefry_on_cpu() -> bool:
    """Registers the unrolled threefry lowering for CPU; True when it did, False where this JAX lacks it."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
    except ImportError:
        return False
    primitive = getattr(threefry2x32, "threefry2x32_p", None)
    rule = getattr(threefry2x32, "_threefry2x32_lowering_rule", None)
    if primitive is None or rule is None:
        return False
    mlir.register_lowering(primitive, rule, platform="cpu")
    return True
