"""Image-quality and sample-quality metrics.

`mse`, `psnr` and `ssim` are pure JAX functions (jittable, vmap-able) on images laid out
channels-last, (N, H, W, C) batches or single (H, W, C) images, with one score per image. Integer
inputs (e.g. uint8 with data_range=255) are computed in float32; float inputs in at least float32
(float64 stays float64 when x64 is enabled). An image pair holding any NaN or Inf scores NaN, so
that a broken output never passes for a perfect one.

`iwae_nll` is the importance-weighted log-likelihood estimate of a VAE, jitted once per shape.

`fid_from_features` is a host-side float64 numpy computation on feature vectors that a classifier
produced; it is not jittable and returns a Python float.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.train.evaluate import map_examples

__all__ = ["mse", "psnr", "ssim", "fid_from_features", "iwae_nll"]


def _check_images(name: str, x: jax.Array, y: jax.Array) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{name}: x and y must have the same shape, got {x.shape} and {y.shape}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: expected images (H, W, C) or batches (N, H, W, C), got shape {x.shape}")


def _as_float_images(name: str, x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """x and y checked as images and cast to their common dtype, at least float32."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_images(name, x, y)
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    return x.astype(dtype), y.astype(dtype)


def _finite_pairs(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per image (over its last three axes): whether both x and y hold only finite values."""
    return jnp.all(jnp.isfinite(x) & jnp.isfinite(y), axis=(-3, -2, -1))


def mse(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Mean squared error per image, over H, W and C, in squared pixel units.

    x and y are images of the same shape, (N, H, W, C) or (H, W, C), of any real dtype. The result
    is float32 (or float64) of shape (N,) for a batch, a scalar for one image; NaN for an image
    pair holding any NaN or Inf.
    """
    x, y = _as_float_images("mse", x, y)
    error = jnp.mean(jnp.square(x - y), axis=(-3, -2, -1))
    return jnp.where(_finite_pairs(x, y), error, jnp.nan)


def psnr(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    data_range: float = 1.0,
    max_db: float = 100.0,
) -> jax.Array:
    """Peak signal-to-noise ratio per image, in decibels: 10 log10(data_range^2 / MSE), with the
    MSE taken over H, W and C of each image.

    x and y are images of the same shape, (N, H, W, C) or (H, W, C), of any real dtype, with values
    in [0, data_range] (data_range is their peak-to-peak range: 1.0 for floats in [0, 1], 255 for
    uint8). The result is min(PSNR, max_db) (max_db in dB), so identical images (MSE = 0,
    PSNR = +inf) give exactly max_db rather than inf, with gradient 0 there, never NaN; an image
    pair holding any NaN or Inf gives NaN. Float32 (or float64) of shape (N,) for a batch, a scalar
    for one image; dB.
    """
    x, y = _as_float_images("psnr", x, y)
    error = mse(x, y)
    identical = error == 0
    safe_error = jnp.where(identical, jnp.ones_like(error), error)  # NaN (a non-finite pair) stays NaN
    db = 10.0 * jnp.log10(jnp.square(jnp.asarray(data_range, x.dtype)) / safe_error)
    return jnp.where(identical, jnp.asarray(max_db, x.dtype), jnp.minimum(db, max_db))


_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    return g / g.sum()


def _separable_filter_valid(z: jax.Array, g: np.ndarray) -> jax.Array:
    """Depthwise 'valid' filtering of (N, H, W, K) with the outer product g g^T."""
    k = z.shape[-1]
    win = g.shape[0]
    g = jnp.asarray(g, z.dtype)
    kh = jnp.broadcast_to(g.reshape(win, 1, 1, 1), (win, 1, 1, k))  # HWIO, depthwise
    kw = jnp.broadcast_to(g.reshape(1, win, 1, 1), (1, win, 1, k))
    dn = ("NHWC", "HWIO", "NHWC")
    conv = lambda a, w: jax.lax.conv_general_dilated(  # noqa: E731
        a,
        w,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=dn,
        feature_group_count=k,
        precision=jax.lax.Precision.HIGHEST,
    )
    return conv(conv(z, kh), kw)


def ssim(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    data_range: float = 1.0,
) -> jax.Array:
    """Structural similarity per image (Wang et al. 2004), unitless, at most 1.

    x and y are images of the same shape, (N, H, W, C) or (H, W, C) with H and W >= 11, of any real
    dtype, with values in [0, data_range] (the peak-to-peak range L: 1.0 for [0, 1], 255 for uint8).
    Local statistics come from an 11x11 gaussian window (sigma 1.5, weights summing to 1) applied as
    a separable 'valid' filter (no padding: the SSIM map of an H x W image is (H-10) x (W-10)), with
    population (weighted, not sample) variances; K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2,
    C2 = (K2 L)^2. This is skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False) convention. The SSIM map is averaged over the valid positions and
    the channels. Float32 (or float64) of shape (N,) for a batch, a scalar for one image; NaN for
    an image pair holding any NaN or Inf.
    """
    x, y = _as_float_images("ssim", x, y)
    h, w = x.shape[-3], x.shape[-2]
    if h < _SSIM_WIN or w < _SSIM_WIN:
        raise ValueError(f"ssim: images must be at least {_SSIM_WIN}x{_SSIM_WIN}, got {h}x{w}")
    single = x.ndim == 3
    if single:
        x, y = x[None], y[None]
    finite = _finite_pairs(x, y)

    # Centre each image-channel on its mean first: variances and covariances do not change,
    # but E[x^2] - E[x]^2 loses far less to cancellation in float32 (flat regions stay ~0).
    m_x = jnp.mean(x, axis=(-3, -2), keepdims=True)
    m_y = jnp.mean(y, axis=(-3, -2), keepdims=True)
    x, y = x - m_x, y - m_y
    # One depthwise filter pass for all five local moments: E[x], E[y], E[x^2], E[y^2], E[xy].
    stacked = jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1)
    moments = _separable_filter_valid(stacked, _gaussian_1d(_SSIM_WIN, _SSIM_SIGMA))
    mu_x, mu_y, e_xx, e_yy, e_xy = jnp.split(moments, 5, axis=-1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    mu_x, mu_y = mu_x + m_x, mu_y + m_y

    L = jnp.asarray(data_range, x.dtype)
    c1 = jnp.square(_SSIM_K1 * L)
    c2 = jnp.square(_SSIM_K2 * L)
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    out = jnp.where(finite, jnp.mean(num / den, axis=(-3, -2, -1)), jnp.nan)
    return out[0] if single else out


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two sets of feature vectors, as Gaussians, as a Python float in
    squared feature units (>= 0 up to rounding).

    a is (N, d) and b is (M, d) features, N, M >= 2, of any real dtype, numpy or JAX arrays. The
    distance is ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a^{1/2} C_b C_a^{1/2})^{1/2}) with the
    means and unbiased (ddof=1) covariances of the rows, computed on the host in float64 numpy: the
    square roots come from eigh of symmetric PSD matrices, with tiny negative eigenvalues
    (rounding) clipped to 0, so the result is real and symmetric in a and b. Raises ValueError if
    a or b is not 2-D, has fewer than 2 rows or non-finite values, or the feature dimensions differ.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    for name, f in (("a", a), ("b", b)):
        if f.ndim != 2:
            raise ValueError(f"fid_from_features: {name} must be 2-D (num_samples, d), got shape {f.shape}")
        if f.shape[0] < 2:
            raise ValueError(f"fid_from_features: {name} needs at least 2 rows for a covariance, got {f.shape[0]}")
        if not np.all(np.isfinite(f)):
            raise ValueError(f"fid_from_features: {name} contains NaN or inf")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"fid_from_features: feature dimensions differ: a is {a.shape}, b is {b.shape} (d={a.shape[1]} vs d={b.shape[1]})")

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], a.shape[1])
    cov_b = np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], b.shape[1])

    sqrt_a = _psd_sqrt(cov_a)
    m = sqrt_a @ cov_b @ sqrt_a
    m = 0.5 * (m + m.T)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(m), 0.0, None))))

    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD float64 matrix via eigh."""
    c = 0.5 * (c + c.T)
    evals, evecs = np.linalg.eigh(c)
    return (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T


def iwae_nll(
    model,
    params,
    images: jax.typing.ArrayLike,
    key: jax.Array,
    k: int,
    *,
    batch_size: int = 100,
    chunk_size: int = 100,
) -> float:
    """Importance-weighted estimate of -log p(x), mean nats per image, with k samples from q(z|x).

    -log p(x) ~= -log (1/k) sum_i w_i with log w_i = log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x).
    In expectation it is an upper bound on -log p(x) that decreases with k and equals the negative
    ELBO at k = 1. The weights come chunk_size at a time (the last chunk masked beyond k) under a
    lax.scan with a running log-sum-exp, so memory stays at about batch_size * chunk_size decoded
    images. Batch b draws from fold_in(key, b), its chunk i from fold_in(fold_in(key, b), i)
    (`jaxae.train.evaluate.map_examples`); the computation is jitted once per (model, k, chunk,
    batch shape), a last batch of fewer images being a shape of its own.

    `model` is a hashable model (a Flax module) whose `model.apply({"params": params}, x, key, k,
    method="log_weights")` gives the log weights (k, B) of images x (B, ...), nats summed over
    pixels and latent units (`jaxae.models.vae.VAE` and `HierarchicalVAE`). `images` are (N, ...)
    float images, the data the likelihood scores (e.g. binarized {0, 1}); the draws are a pure
    function of `key` (and of batch_size, chunk_size); `k` is the number of importance samples per
    image, at least 1. Returns the mean over the N images of the per-image estimate, nats per
    image (Python float).
    """
    if k < 1:
        raise ValueError(f"iwae_nll: k must be at least 1, got {k}")
    values = map_examples(
        _log_mean_weights_of(model, k, min(chunk_size, k)), params, {"image": jnp.asarray(images, jnp.float32)}, key, batch_size
    )
    return -float(np.mean(values, dtype=np.float64))


@functools.cache
def _log_mean_weights_of(model, k: int, chunk: int):
    """`_log_mean_weights` for one (model, k, chunk): one function object, so one compilation per shape."""
    return functools.partial(_log_mean_weights, model, k=k, chunk=chunk)


def _log_mean_weights(model, params, batch, key: jax.Array, *, k: int, chunk: int) -> jax.Array:
    """log (1/k) sum_i w_i (B,) of the images batch["image"] (B, ...), the weights drawn `chunk` at a time."""
    x = batch["image"]

    def body(total, i):
        log_w = model.apply({"params": params}, x, jax.random.fold_in(key, i), chunk, method="log_weights")
        real = (i * chunk + jnp.arange(chunk) < k)[:, None]  # the last chunk may overrun k
        log_w = jnp.where(real, log_w, -jnp.inf)
        return jnp.logaddexp(total, jax.nn.logsumexp(log_w, axis=0)), None

    start = jnp.full(x.shape[0], -jnp.inf, jnp.float32)
    total, _ = jax.lax.scan(body, start, jnp.arange(-(-k // chunk)))
    return total - jnp.log(float(k))
