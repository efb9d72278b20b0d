"""The unrolled threefry lowering on CPU: an explicit opt-in, registered on this JAX, unrolled,
and bit-identical."""

import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax._src.random import threefry2x32

from jaxae.fast_random import use_unrolled_threefry_on_cpu

ROLLED = "import jax{}; print('while' in jax.jit(lambda k: jax.random.bits(k, (64,))).lower(jax.random.key(0)).as_text())"


def test_importing_jaxae_leaves_jax_unchanged():
    for imports, rolled in (
        (", jaxae, jaxae.runs, jaxae.cli", "True"),
        (", jaxae.fast_random; jaxae.fast_random.use_unrolled_threefry_on_cpu()", "False"),
    ):
        done = subprocess.run([sys.executable, "-c", ROLLED.format(imports)], capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == rolled, (imports, done.stderr)


def test_registration_takes_effect_on_this_jax():
    assert use_unrolled_threefry_on_cpu()
    hlo = jax.jit(lambda key: jax.random.bits(key, (64,))).lower(jax.random.key(0)).as_text()
    assert "while" not in hlo, "the threefry hash is still lowered as a rolled loop"


def test_same_bits_as_the_rolled_loop():
    k1, k2, x1, x2 = (jnp.asarray(c) for c in np.random.default_rng(0).integers(0, 2**32, (4, 1000), np.uint32))
    unrolled = jax.jit(threefry2x32.threefry2x32_p.bind)(k1[0], k2[0], x1, x2)
    rolled = jax.jit(lambda *a: threefry2x32._threefry2x32_lowering(*a, use_rolled_loops=True))(k1[0], k2[0], x1, x2)
    chex.assert_trees_all_equal(tuple(unrolled), tuple(rolled))
