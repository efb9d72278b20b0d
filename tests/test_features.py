"""The FID feature network: trained once per recipe and cached, features, FID on real digits."""
import functools

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import data, features

QUICK = dict(epochs=1, train_size=2048)  # a quick recipe; the real one trains on all 60000 images


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXAE_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def net(cache):
    return features.network("mnist", **QUICK)


@pytest.fixture(scope="module")
def test_images():
    return data.load("mnist", "test")


def test_trained_once_then_loaded_from_the_cache(cache, net, monkeypatch):
    files = sorted(p.name for p in cache.glob("*.npz"))
    assert files == [f"{net.name}.npz"]
    assert net.name == "classifier-mnist-conv32s2-64s2-dense128-adam1ep-first2048-seed0"
    assert net.describe() == {"feature_network": net.name, "classifier_accuracy": net.accuracy}
    assert net.accuracy > 0.8, net.accuracy
    assert features.network("mnist", **QUICK) is net  # same process: kept in memory

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(features, "train_classifier", no_training)
    features._network.cache_clear()  # a new process: only the file is left
    loaded = features.network("mnist", **QUICK)
    assert loaded is not net and loaded.accuracy == net.accuracy
    chex.assert_trees_all_equal(loaded.params, net.params)


def test_cache_key_names_dataset_recipe_and_seed(cache, monkeypatch):
    monkeypatch.setattr(features, "_network", lambda *args: args)
    assert features.network("fashion_mnist", seed=3) == ("fashion_mnist", 3, features.EPOCHS, None, cache)
    monkeypatch.delenv("JAXAE_CACHE_DIR")
    assert features.network("mnist")[-1] == features.Path.home() / ".cache" / "jaxae" / "features"


def test_features_shape_and_input_types(net, test_images, monkeypatch):
    monkeypatch.setattr(features, "network", functools.partial(features.network, **QUICK))
    images = test_images[0][:1001]  # not a multiple of the batch: padded, then cut
    f = net.features(images)
    chex.assert_shape(f, (1001, 128))
    assert f.dtype == np.float32 and np.all(f >= 0)  # ReLU activations
    np.testing.assert_allclose(net.features(images[:7]), f[:7], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.features(jnp.asarray(images[:7], jnp.float32) / 255), f[:7], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features.features("mnist", images[:7]), f[:7], rtol=1e-4, atol=1e-5)


def test_fid_on_real_digits(net, test_images, monkeypatch):
    monkeypatch.setattr(features, "network", functools.partial(features.network, **QUICK))
    images, labels = test_images
    assert abs(features.fid("mnist", images[:1000], images[:1000])) < 1e-6
    halves = features.fid("mnist", images[:2000], images[2000:4000])
    ones_vs_sevens = features.fid("mnist", images[labels == 1][:500], images[labels == 7][:500])
    assert 0 < halves < 0.1 * ones_vs_sevens, (halves, ones_vs_sevens)
