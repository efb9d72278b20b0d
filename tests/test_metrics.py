"""Tests for jaxae.metrics: mse, psnr, ssim (pure JAX) and fid_from_features (host numpy)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxae.metrics import fid_from_features, mse, psnr, ssim


def _images(seed, shape):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype(np.float32)


def _with_bad_pixels(x, value):
    """A copy of the batch `x` with `value` in one pixel of image 0 and every pixel of image 2."""
    x = x.copy()
    x[0, 1, 2, 0] = value
    x[2] = value
    return x


def _ssim_reference(x, y, data_range=1.0):
    """Straightforward float64 SSIM of one (H, W, C) pair: explicit loop over valid windows."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    win, sigma = 11, 1.5
    r = np.arange(win) - win // 2
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    w /= w.sum()
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    h, wd, ch = x.shape
    vals = []
    for k in range(ch):
        for i in range(h - win + 1):
            for j in range(wd - win + 1):
                px = x[i : i + win, j : j + win, k]
                py = y[i : i + win, j : j + win, k]
                mx = np.sum(w * px)
                my = np.sum(w * py)
                vx = np.sum(w * (px - mx) ** 2)
                vy = np.sum(w * (py - my) ** 2)
                cxy = np.sum(w * (px - mx) * (py - my))
                vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


class PsnrTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_constant_offset_is_20_db(self):
        x = _images(0, (3, 8, 8, 1)) * 0.8
        y = x + np.float32(0.1)
        out = self.variant(psnr)(x, y)
        chex.assert_shape(out, (3,))
        np.testing.assert_allclose(np.asarray(out), 20.0, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_identical_is_max_db(self):
        x = _images(1, (2, 8, 8, 3))
        out = self.variant(psnr)(x, x)
        chex.assert_shape(out, (2,))
        np.testing.assert_array_equal(np.asarray(out), 100.0)
        out = self.variant(lambda a, b: psnr(a, b, max_db=60.0))(x, x)
        np.testing.assert_array_equal(np.asarray(out), 60.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_cap_applies_above_max_db(self):
        x = np.zeros((1, 4, 4, 1), np.float32)
        y = x + np.float32(1e-3)  # 60 dB
        np.testing.assert_allclose(np.asarray(self.variant(psnr)(x, y)), 60.0, atol=1e-3)
        out = self.variant(lambda a, b: psnr(a, b, max_db=50.0))(x, y)
        np.testing.assert_array_equal(np.asarray(out), 50.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_formula_and_uint8_range(self):
        x = _images(2, (4, 8, 8, 1))
        y = np.clip(x + np.random.default_rng(3).normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
        mse = np.mean((x.astype(np.float64) - y) ** 2, axis=(1, 2, 3))
        np.testing.assert_allclose(np.asarray(self.variant(psnr)(x, y)), 10 * np.log10(1.0 / mse), rtol=1e-5)
        xu = np.round(x * 255).astype(np.uint8)
        yu = np.round(y * 255).astype(np.uint8)
        mse_u = np.mean((xu.astype(np.float64) - yu) ** 2, axis=(1, 2, 3))
        out = self.variant(lambda a, b: psnr(a, b, data_range=255.0))(xu, yu)
        self.assertEqual(out.dtype, jnp.float32)
        np.testing.assert_allclose(np.asarray(out), 10 * np.log10(255.0**2 / mse_u), rtol=1e-5)

    def test_single_image_and_vmap(self):
        x = _images(4, (3, 8, 8, 2))
        y = _images(5, (3, 8, 8, 2))
        batch = psnr(x, y)
        single = psnr(x[1], y[1])
        chex.assert_shape(single, ())
        np.testing.assert_allclose(np.asarray(single), np.asarray(batch[1]), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(jax.vmap(psnr)(x, y)), np.asarray(batch), rtol=1e-6)

    def test_gradient_finite_at_identical(self):
        x = jnp.asarray(_images(6, (2, 4, 4, 1)))
        g = jax.grad(lambda a: psnr(a, x).sum())(x)
        chex.assert_tree_all_finite(g)

    def test_shape_mismatch_raises(self):
        with self.assertRaisesRegex(ValueError, "same shape"):
            psnr(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3)))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(np.nan, np.inf, -np.inf)
    def test_non_finite_images_are_nan_not_perfect(self, value):
        """A NaN or Inf anywhere in either image scores NaN; the other images keep their scores."""
        x = _images(7, (4, 8, 8, 1))
        y = np.clip(x + np.float32(0.1), 0, 1)
        bad = _with_bad_pixels(x, value)
        for a, b in ((bad, y), (y, bad), (bad, bad)):
            out = np.asarray(self.variant(psnr)(a, b))
            chex.assert_shape(out, (4,))
            np.testing.assert_array_equal(np.isnan(out), [True, False, True, False])
            np.testing.assert_allclose(out[[1, 3]], np.asarray(psnr(a[[1, 3]], b[[1, 3]])), rtol=1e-6)
        self.assertTrue(np.isnan(float(self.variant(psnr)(bad[2], bad[2]))))  # identical, yet not max_db


class MseTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_formula_per_image(self):
        x = _images(30, (3, 8, 8, 2))
        y = _images(31, (3, 8, 8, 2))
        out = self.variant(mse)(x, y)
        chex.assert_shape(out, (3,))
        np.testing.assert_allclose(np.asarray(out), np.mean((x.astype(np.float64) - y) ** 2, axis=(1, 2, 3)), rtol=1e-6)
        chex.assert_shape(self.variant(mse)(x[0], y[0]), ())

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(np.nan, np.inf, -np.inf)
    def test_non_finite_images_are_nan(self, value):
        x = _images(32, (3, 8, 8, 1))
        out = np.asarray(self.variant(mse)(_with_bad_pixels(x, value), x))
        self.assertTrue(np.isnan(out[0]) and np.isnan(out[2]))
        self.assertEqual(out[1], 0.0)


class SsimTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_identical_is_one(self):
        x = _images(10, (3, 16, 16, 2))
        out = self.variant(ssim)(x, x)
        chex.assert_shape(out, (3,))
        np.testing.assert_allclose(np.asarray(out), 1.0, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy_reference(self):
        x = _images(11, (2, 16, 16, 2))
        noise = np.random.default_rng(12).normal(0, 0.2, x.shape)
        y = np.clip(0.7 * x + 0.1 + noise, 0, 1).astype(np.float32)
        out = self.variant(ssim)(x, y)
        chex.assert_shape(out, (2,))
        ref = [_ssim_reference(x[i], y[i]) for i in range(2)]
        np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_reference_non_square_uint8(self):
        rng = np.random.default_rng(13)
        x = rng.integers(0, 256, (1, 13, 17, 1)).astype(np.uint8)
        y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
        out = self.variant(lambda a, b: ssim(a, b, data_range=255.0))(x, y)
        self.assertEqual(out.dtype, jnp.float32)
        np.testing.assert_allclose(np.asarray(out), [_ssim_reference(x[0], y[0], data_range=255.0)], atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.05, 0.2, -0.3)
    def test_constant_images_with_shift(self, shift):
        # Constant images: zero variances, so SSIM is the luminance term alone, in closed form.
        a = 0.5
        x = np.full((1, 12, 12, 1), a, np.float64)
        y = x + shift
        c1 = 0.01**2
        expected = (2 * a * (a + shift) + c1) / (a**2 + (a + shift) ** 2 + c1)
        out = self.variant(ssim)(x.astype(np.float32), y.astype(np.float32))
        np.testing.assert_allclose(np.asarray(out), [expected], atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_textured_image_with_shift_below_one(self):
        x = _images(14, (1, 16, 16, 1)) * 0.5
        out = self.variant(ssim)(x, x + np.float32(0.2))
        self.assertLess(float(out[0]), 1.0)
        self.assertGreater(float(out[0]), 0.5)
        np.testing.assert_allclose(np.asarray(out), [_ssim_reference(x[0], x[0] + np.float32(0.2))], atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_decreases_with_noise(self):
        x = _images(15, (1, 16, 16, 1))
        rng = np.random.default_rng(16)
        base = rng.normal(0, 1, x.shape).astype(np.float32)
        scores = [float(self.variant(ssim)(x, x + np.float32(s) * base)[0]) for s in (0.0, 0.05, 0.1, 0.3)]
        self.assertTrue(all(a > b for a, b in zip(scores, scores[1:])), scores)

    def test_symmetric_single_image_vmap_and_scale(self):
        x = _images(17, (3, 16, 16, 1))
        y = _images(18, (3, 16, 16, 1))
        batch = ssim(x, y)
        np.testing.assert_allclose(np.asarray(ssim(y, x)), np.asarray(batch), rtol=1e-6)
        single = ssim(x[2], y[2])
        chex.assert_shape(single, ())
        np.testing.assert_allclose(np.asarray(single), np.asarray(batch[2]), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(jax.vmap(ssim)(x, y)), np.asarray(batch), rtol=1e-6)
        scaled = ssim(255.0 * x, 255.0 * y, data_range=255.0)
        np.testing.assert_allclose(np.asarray(scaled), np.asarray(batch), atol=1e-5)

    def test_jit_traces_once(self):
        f = jax.jit(chex.assert_max_traces(ssim, n=1))
        x = _images(19, (2, 12, 12, 1))
        f(x, x)
        f(x * 0.5, x)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(np.nan, np.inf, -np.inf)
    def test_non_finite_images_are_nan(self, value):
        """A NaN or Inf anywhere in either image scores NaN; the other images keep their scores."""
        x = _images(20, (3, 16, 16, 1))
        y = np.clip(x + np.float32(0.05), 0, 1)
        bad = _with_bad_pixels(x, value)
        for a, b in ((bad, y), (y, bad), (bad, bad)):
            out = np.asarray(self.variant(ssim)(a, b))
            chex.assert_shape(out, (3,))
            self.assertTrue(np.isnan(out[0]) and np.isnan(out[2]), out)
            np.testing.assert_allclose(out[1], _ssim_reference(a[1], b[1]), atol=1e-5)
        self.assertTrue(np.isnan(float(self.variant(ssim)(bad[0], bad[0]))))

    def test_bad_shapes_raise(self):
        with self.assertRaisesRegex(ValueError, "at least 11x11"):
            ssim(np.zeros((1, 10, 16, 1)), np.zeros((1, 10, 16, 1)))
        with self.assertRaisesRegex(ValueError, "same shape"):
            ssim(np.zeros((1, 16, 16, 1)), np.zeros((1, 16, 16, 3)))
        with self.assertRaisesRegex(ValueError, r"\(N, H, W, C\)"):
            ssim(np.zeros((16, 16)), np.zeros((16, 16)))


def test_fid_self_is_zero():
    a = np.random.default_rng(20).normal(size=(500, 16)) @ np.random.default_rng(21).normal(size=(16, 16))
    fid = fid_from_features(a, a)
    scale = np.trace(np.cov(a, rowvar=False))
    assert abs(fid) < 1e-6 * scale, (fid, scale)


def test_fid_unit_mean_shift_is_d():
    d = 8
    rng = np.random.default_rng(22)
    a = rng.normal(size=(20000, d))
    b = rng.normal(size=(20000, d)) + 1.0
    fid = fid_from_features(a, b)
    assert math.isclose(fid, d, rel_tol=0.03), fid


def test_fid_known_covariance_term():
    # Exact Gaussians are not needed: with a = z and b = 2 z + c the formula is
    # ||mu + c||^2 + Tr(C + 4C - 2 * 2C) = ||mu + c||^2 + Tr(C), exactly, for the sample
    # mean mu and covariance C of z.
    rng = np.random.default_rng(23)
    z = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    c = np.arange(5.0)
    fid = fid_from_features(z, 2 * z + c)
    shift = z.mean(axis=0) + c
    expected = shift @ shift + np.trace(np.cov(z, rowvar=False))
    assert math.isclose(fid, expected, rel_tol=1e-9), (fid, expected)


def test_fid_symmetric_and_permutation_invariant():
    rng = np.random.default_rng(24)
    a = rng.normal(size=(400, 12))
    b = rng.normal(size=(300, 12)) * 1.5 + 0.3
    fid = fid_from_features(a, b)
    assert fid > 0
    assert math.isclose(fid_from_features(b, a), fid, rel_tol=1e-9)
    assert math.isclose(fid_from_features(a[rng.permutation(400)], b[rng.permutation(300)]), fid, rel_tol=1e-9)


def test_fid_accepts_jax_float32_and_returns_float():
    rng = np.random.default_rng(25)
    a = rng.normal(size=(100, 4)).astype(np.float32)
    b = rng.normal(size=(120, 4)).astype(np.float32)
    out = fid_from_features(jnp.asarray(a), jnp.asarray(b))
    assert isinstance(out, float)
    assert math.isclose(out, fid_from_features(a, b), rel_tol=1e-12)


@pytest.mark.parametrize(
    "a_shape, b_shape, match",
    [
        ((10, 8), (10, 7), "feature dimensions differ"),
        ((10,), (10, 8), "must be 2-D"),
        ((1, 8), (10, 8), "at least 2 rows"),
    ],
)
def test_fid_bad_shapes_raise(a_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        fid_from_features(np.zeros(a_shape), np.ones(b_shape))
