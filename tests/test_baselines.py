"""The classical baselines: PCA (leading components of the pixel covariance) and the gaussian blur."""

import jax.numpy as jnp
import numpy as np

from jaxae import baselines


def test_pca_reconstruction_is_the_projection_on_the_leading_singular_vectors():
    rng = np.random.default_rng(0)
    images = (rng.random((500, 6, 6, 1)) ** 3).astype(np.float32)
    flat = images.reshape(500, -1).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    pca = baselines.PCA(images, 10)
    for components in (1, 4, 10):
        expected = np.clip(((flat - mean) @ vt[:components].T) @ vt[:components] + mean, 0, 1)
        np.testing.assert_allclose(pca.reconstruct(images, components).reshape(500, -1), expected, atol=1e-6)
    assert pca.reconstruct(images).shape == images.shape


def test_gaussian_blur_keeps_flat_images_and_shapes():
    flat = jnp.full((2, 9, 7, 3), 0.3)
    np.testing.assert_allclose(baselines.gaussian_blur(flat, 1.0), flat, atol=1e-6)
    spike = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
    blurred = baselines.gaussian_blur(spike, 1.0)
    assert blurred.shape == spike.shape and abs(float(blurred.sum()) - 1.0) < 1e-5 and float(blurred.max()) < 0.2
