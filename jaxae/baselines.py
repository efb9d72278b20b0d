"""Classical baselines the learned models are measured against: gaussian-blur denoising and PCA.

Denoising baselines are scored with `jaxae.runs.common.restoration_metrics`.

Images are float32 (N, H, W, C) in [0, 1]. Interpolation baselines for super-resolution are
`jaxae.noise.upsample` with method "nearest" or "bicubic".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable gaussian filter (std `sigma` pixels, radius ceil(3 sigma)), edges replicated."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = jnp.asarray(taps / taps.sum(), x.dtype)
    padded = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    n, h, w, c = x.shape
    rows = sum(taps[i] * padded[:, i : i + h, :, :] for i in range(2 * radius + 1))
    return sum(taps[i] * rows[:, :, i : i + w, :] for i in range(2 * radius + 1))


class PCA:
    """Principal components of flattened images (float64, on the host): fit, encode, decode.

    The components are the leading eigenvectors of the (D, D) covariance of the D pixel values,
    which costs one pass over the images plus a D x D eigendecomposition, however many the images
    (an SVD of the (N, D) images took minutes for N = 60000)."""

    def __init__(self, images: np.ndarray, components: int):
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        self.mean = flat.mean(axis=0)
        centred = flat - self.mean
        _, vectors = np.linalg.eigh(centred.T @ centred)  # eigenvalues ascending
        self.basis = vectors[:, ::-1][:, :components].T  # (components, H*W*C)
        self.shape = images.shape[1:]

    def reconstruct(self, images: np.ndarray, components: int | None = None) -> np.ndarray:
        """Projects onto the first `components` (default: all fitted) and back, clipped to [0, 1];
        same shape as `images`."""
        basis = self.basis[:components]
        flat = np.asarray(images, np.float64).reshape(len(images), -1) - self.mean
        out = (flat @ basis.T) @ basis + self.mean
        return np.clip(out, 0.0, 1.0).reshape(len(images), *self.shape).astype(np.float32)
