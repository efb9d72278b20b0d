"""Noise models: shape/dtype/range contracts, determinism, and the statistics they promise."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxae import noise

IMAGES = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))


class KeyedNoiseTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
    @parameterized.parameters(("gaussian", 0.2), ("mask", 0.3), ("salt_and_pepper", 0.1))
    def test_contract(self, kind, level):
        fn = noise.NOISES[kind]
        # with_pmap broadcasts the arguments to every device and returns the first device's output.
        out = self.variant(lambda k, x: fn(k, x, level))(jax.random.key(1), IMAGES)
        chex.assert_shape(out, IMAGES.shape)
        chex.assert_type(out, IMAGES.dtype)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert not np.allclose(out, IMAGES)

    @parameterized.parameters(("gaussian", 0.2), ("mask", 0.3), ("salt_and_pepper", 0.1))
    def test_same_key_same_noise(self, kind, level):
        fn = noise.NOISES[kind]
        a = fn(jax.random.key(3), IMAGES, level)
        b = fn(jax.random.key(3), IMAGES, level)
        c = fn(jax.random.key(4), IMAGES, level)
        chex.assert_trees_all_equal(a, b)
        assert not np.array_equal(a, c)

    def test_vmap_over_keys(self):
        keys = jax.random.split(jax.random.key(0), 4)
        out = jax.vmap(lambda k, x: noise.mask(k, x, 0.5))(keys, IMAGES)
        chex.assert_shape(out, IMAGES.shape)


def test_noise_statistics():
    x = jnp.full((200, 28, 28, 1), 0.5)
    key = jax.random.key(7)
    assert abs(float(jnp.std(noise.gaussian(key, x, 0.1))) - 0.1) < 0.002
    assert abs(float(jnp.mean(noise.mask(key, x, 0.3) == 0)) - 0.3) < 0.01
    sp = noise.salt_and_pepper(key, x, 0.2)
    assert abs(float(jnp.mean(sp == 1.0)) - 0.1) < 0.01
    assert abs(float(jnp.mean(sp == 0.0)) - 0.1) < 0.01


@pytest.mark.parametrize("factor", [2, 4])
def test_downsample_upsample_shapes(factor):
    small = noise.downsample(IMAGES, factor)
    chex.assert_shape(small, (4, 28 // factor, 28 // factor, 1))
    np.testing.assert_allclose(small[0, 0, 0, 0], IMAGES[0, :factor, :factor, 0].mean(), rtol=1e-6)
    for method in ("nearest", "bicubic"):
        back = noise.upsample(small, factor, method)
        chex.assert_shape(back, IMAGES.shape)
        chex.assert_type(back, IMAGES.dtype)
        assert float(back.min()) >= 0.0 and float(back.max()) <= 1.0
    np.testing.assert_array_equal(noise.upsample(small, factor, "nearest")[:, ::factor, ::factor], small)


def test_downsample_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible"):
        noise.downsample(IMAGES, 3)


def test_parse():
    assert noise.Noise.parse("gaussian:0.2") == noise.Noise("gaussian", 0.2)
    assert str(noise.Noise.parse("salt_and_pepper:0.1")) == "salt_and_pepper:0.1"
    for bad, message in (("blur:0.1", "unknown noise"), ("mask", "KIND:LEVEL"), ("mask:1.5", "out of range")):
        with pytest.raises(ValueError, match=message):
            noise.Noise.parse(bad)
