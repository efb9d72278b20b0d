"""Test set-up: four CPU devices for the parallel tests and one compilation cache for the session
(must run before any other JAX call), a feature-network cache per session, a quick feature
network, and synthetic labelled datasets of any shape."""

import tempfile

import jax
import numpy as np
import pytest

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jaxae-xla-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

QUICK_FEATURES = dict(epochs=1, train_size=512)  # a feature network that trains in seconds


@pytest.fixture(autouse=True, scope="session")
def feature_cache(tmp_path_factory):
    """Feature networks trained by tests go to a folder of this session, never ~/.cache."""
    folder = tmp_path_factory.mktemp("features")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXAE_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture
def quick_features(monkeypatch):
    """Every feature network trained on 512 images for one epoch, whatever recipe is asked for."""
    from jaxae import features

    network = features.network

    def quick(data, seed=0, epochs=None, train_size=None, arch="conv"):
        return network(data, seed=seed, arch=arch, **QUICK_FEATURES)

    monkeypatch.setattr(features, "network", quick)


def synthetic_images(n: int, shape=(28, 28, 1), classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, *shape) and int32 labels (n,): each class a bright rectangle at its own
    place on a dark background, with pixel noise, so that models can learn something."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    labels = rng.integers(0, classes, n).astype(np.int32)
    images = rng.integers(0, 40, (n, *shape)).astype(np.uint8)
    for c in range(classes):
        top, left = (c * height) // (2 * classes), (c * width) // (2 * classes)
        tint = (np.arange(channels) + c) % channels == 0 if channels > 1 else np.ones(1, bool)
        images[labels == c, top : top + height // 2, left : left + width // 2] += np.where(tint, 200, 120).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="session")
def synthetic():
    """synthetic(shape, n_train, n_test, labels=True) -> a jaxae.data.Dataset of synthetic images."""
    from jaxae import data

    def make(shape=(28, 28, 1), n_train=256, n_test=64, labels=True, classes=10):
        train, test = synthetic_images(n_train, shape, classes, 0), synthetic_images(n_test, shape, classes, 1)
        if not labels:
            return data.from_arrays(train[0], test[0], name=f"synthetic{shape}")
        return data.from_arrays(train[0], test[0], train[1], test[1], name=f"synthetic{shape}")

    return make
