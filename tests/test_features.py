"""The FID feature network: trained once per recipe and dataset and cached, features, FID on real digits."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import data, features
from jaxae.models.classifier import Classifier

QUICK = dict(epochs=1, train_size=2048)  # a quick recipe; the real one trains on all 60000 images


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXAE_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("mnist")


@pytest.fixture(scope="module")
def net(cache, digits):
    return features.network(digits, **QUICK)


def test_trained_once_then_loaded_from_the_cache(cache, net, digits, monkeypatch):
    files = sorted(p.name for p in cache.glob("*.npz"))
    assert files == [f"{net.name}.npz"]
    assert net.name == "classifier-mnist-conv32s2-64s2-dense128-adam1ep-first2048-seed0"
    assert net.describe() == {"feature_network": net.name, "classifier_accuracy": net.accuracy}
    assert net.accuracy > 0.8, net.accuracy
    assert features.network(digits, **QUICK) is net  # same process: kept in memory
    assert features.network(digits.subset(100, 10), **QUICK) is net  # a subset's network is its whole dataset's

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(features, "train_classifier", no_training)
    monkeypatch.setattr(features, "_LOADED", {})  # a new process: only the file is left
    loaded = features.network(digits, **QUICK)
    assert loaded is not net and loaded.accuracy == net.accuracy
    chex.assert_trees_all_equal(loaded.params, net.params)


def test_cache_name_says_dataset_recipe_and_seed(digits, synthetic):
    model = Classifier()
    assert features.network_name(digits, model, 3, 2, None) == "classifier-mnist-conv32s2-64s2-dense128-adam2ep-seed3"
    own = synthetic((16, 16, 3))
    assert (
        features.network_name(own, model, 0, 1, 64)
        == f"classifier-synthetic_16_16_3_-{own.fingerprint}-conv32s2-64s2-dense128-adam1ep-first64-seed0"
    )


def test_a_dataset_without_labels_has_no_feature_network(synthetic):
    with pytest.raises(ValueError, match="has no labels"):
        features.network(synthetic(labels=False))


def test_features_shape_and_input_types(net, digits):
    images = digits.test.images[:1001]  # not a multiple of the batch: a last batch of one
    f = net.features(images)
    chex.assert_shape(f, (1001, 128))
    assert f.dtype == np.float32 and np.all(f >= 0)  # ReLU activations
    np.testing.assert_allclose(net.features(images[:7]), f[:7], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.features(jnp.asarray(images[:7], jnp.float32) / 255), f[:7], rtol=1e-4, atol=1e-5)
    chex.assert_shape(net.predict(images[:9]), (9,))


def test_fid_on_real_digits(net, digits):
    images, labels = digits.test.images, digits.test.labels
    assert abs(net.fid(images[:1000], images[:1000])) < 1e-6
    halves = net.fid(images[:2000], images[2000:4000])
    ones_vs_sevens = net.fid(images[labels == 1][:500], images[labels == 7][:500])
    assert 0 < halves < 0.1 * ones_vs_sevens, (halves, ones_vs_sevens)


def test_a_network_for_colour_images_of_another_shape(synthetic):
    own = synthetic((32, 24, 3), n_train=256, n_test=64)
    net = features.network(own, epochs=2)
    assert net.features(own.test.images).shape == (64, 128) and net.accuracy > 0.5
    assert features.conditional_accuracy(net, own.test.images, own.test.labels) == pytest.approx(net.accuracy)
