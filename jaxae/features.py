"""The FID's feature network: a small classifier per labelled dataset, trained here once and cached.

No pretrained weights are available offline, so the project trains its own: `Classifier` on the
whole training split (Adam 1e-3, batch 128, 2 epochs, seeded) through `jaxae.train.loop.fit`,
scored on the test split. Its parameters and test accuracy are cached as one .npz file per
(dataset, architecture, recipe, seed) under $JAXAE_CACHE_DIR, default ~/.cache/jaxae/features/;
later calls (any process) load it. A dataset other than the built-in ones is named in the cache
by its path and its fingerprint. Features are the classifier's penultimate activations,
(N, 128) float32.

    net = jaxae.features.network(jaxae.data.load_dataset("mnist"))
    net.fid(generated, test_images)     # a float, squared feature units
    net.describe()                      # name and accuracy, for results
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxae import data as data_module
from jaxae import metrics
from jaxae.config import POSITIVE_INT, option
from jaxae.data import Dataset
from jaxae.models.classifier import Classifier
from jaxae.objectives import classification, to_float
from jaxae.train.evaluate import map_examples
from jaxae.train.loop import fit
from jaxae.train.parallel import data_mesh
from jaxae.train.state import create_train_state
from jaxae.train.step import make_train_step

EPOCHS = 2
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
ARCHS = ("conv", "mlp")
MLP_FEATURES = (256,)  # the mlp classifier's hidden layer before its embedding


def cache_dir() -> Path:
    """$JAXAE_CACHE_DIR if set, else ~/.cache/jaxae/features."""
    return Path(os.environ.get("JAXAE_CACHE_DIR") or Path.home() / ".cache" / "jaxae" / "features")


def _embed(model: Classifier, params, batch, key):
    return model.apply({"params": params}, to_float(batch["image"]), method=Classifier.embed)


def _classify(model: Classifier, params, batch, key):
    return jnp.argmax(model.apply({"params": params}, to_float(batch["image"])), axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNetwork:
    """A trained classifier: its name (dataset, architecture, recipe, seed), test accuracy, params."""

    name: str
    accuracy: float
    model: Classifier
    params: dict

    @functools.cached_property
    def _functions(self):  # one function object each, so each compiles once per batch shape
        return functools.partial(_embed, self.model), functools.partial(_classify, self.model)

    def features(self, images) -> np.ndarray:
        """Penultimate activations (N, embedding) float32 of images (N, H, W, C), uint8 or float in [0, 1]."""
        return map_examples(self._functions[0], self.params, {"image": images})

    def predict(self, images) -> np.ndarray:
        """Class indices (N,) of images (N, H, W, C), uint8 or float in [0, 1]."""
        return map_examples(self._functions[1], self.params, {"image": images})

    def fid(self, images_a, images_b) -> float:
        """Fréchet distance between two image sets (uint8 or float in [0, 1]) in these features."""
        return metrics.fid_from_features(self.features(images_a), self.features(images_b))

    def describe(self) -> dict:
        """What a results file records about the network: its name and test accuracy."""
        return {"feature_network": self.name, "classifier_accuracy": self.accuracy}


def train_classifier(model: Classifier, data: Dataset, seed: int, epochs: int) -> tuple[dict, float]:
    """Trains `model` on the labelled training split of `data`; returns its params and its
    accuracy on the test split."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    state = create_train_state(model, optax.adam(LEARNING_RATE), init_key, jnp.zeros((1, *data.image_shape)))
    # On one device, so that the network (and every FID on it) is the same whatever the device count;
    # conv gradients one step per dispatch (XLA:CPU runs them far slower inside a loop).
    dispatch = {"steps_per_dispatch": 1, "unroll": True} if model.arch == "conv" else {"steps_per_dispatch": 64}
    result = fit(
        state,
        make_train_step(classification()),
        data.train,
        key=data_key,
        shuffle_key=data_key,
        epochs=epochs,
        batch_size=min(BATCH_SIZE, len(data.train)),  # fewer only for datasets smaller than a batch
        progress=False,
        mesh=data_mesh(jax.local_devices()[:1]),
        **dispatch,
    )
    params = jax.device_get(result.state.params)
    test = data.test.load()
    return params, float(np.mean(FeatureNetwork("", 0.0, model, params).predict(test["image"]) == test["label"]))


def _save(path: Path, params: dict, accuracy: float) -> None:
    """Writes params and accuracy as one .npz, atomically."""
    arrays = {"params/" + "/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, accuracy=np.float64(accuracy), **arrays)
    os.replace(tmp, path)


def _load(path: Path) -> tuple[dict, float]:
    with np.load(path) as stored:
        flat = {tuple(k.split("/")[1:]): jnp.asarray(stored[k]) for k in stored.files if k.startswith("params/")}
        return traverse_util.unflatten_dict(flat), float(stored["accuracy"])


def network_name(data: Dataset, model: Classifier, seed: int, epochs: int, train_size: int | None) -> str:
    """The cache name of a feature network; datasets other than the built-in ones are named by
    their path's last part and their fingerprint."""
    subset = "" if train_size is None else f"-first{train_size}"
    dataset = data.name if data.name in data_module.NAMES else f"{re.sub(r'[^A-Za-z0-9_]+', '_', Path(data.name).name)}-{data.fingerprint}"
    return f"classifier-{dataset}-{model.name_tag}-adam{epochs}ep{subset}-seed{seed}"


def network(data: Dataset, seed: int = 0, epochs: int = EPOCHS, train_size: int | None = None, arch: str = "conv") -> FeatureNetwork:
    """The feature network of the labelled dataset `data` (of its whole, for a subset): loaded
    from the cache, else trained and cached (the default recipe, all MNIST training images for EPOCHS epochs, takes a minute or
    two on a CPU). `epochs` and `train_size` (the first n training images) exist for quick
    budgets and tests; they, the seed and the architecture (`arch`: conv, or mlp, whose hidden
    layers have 256 units) are all part of the network's name."""
    if data.classes is None:
        raise ValueError(f"{data.name} has no labels: a feature network (and so an FID) needs a classifier trained on labels")
    data = data.whole or data
    model = Classifier(classes=data.num_classes, arch=arch, **({"features": MLP_FEATURES} if arch == "mlp" else {}))
    return _network(network_name(data, model, seed, epochs, train_size), data, model, seed, epochs, train_size, cache_dir())


_LOADED: dict[tuple[str, Path], FeatureNetwork] = {}


def _network(name: str, data: Dataset, model: Classifier, seed: int, epochs: int, train_size, folder: Path) -> FeatureNetwork:
    """A file lock makes concurrent processes train a network once; the others wait and load it."""
    if (name, folder) in _LOADED:
        return _LOADED[name, folder]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    with open(folder / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            params, accuracy = train_classifier(model, data.subset(train_size, None), seed, epochs)
            _save(path, params, accuracy)
    params, accuracy = _load(path)
    _LOADED[name, folder] = FeatureNetwork(name, accuracy, model, params)
    return _LOADED[name, folder]


def sample_scores(net: FeatureNetwork, generated, train: data_module.Split, test_images, key: jax.Array) -> dict:
    """fid (generated vs test images), fid_floor (as many training images, a random subset of the
    split `train` drawn from `key`, vs test: what a perfect generator would score), the sample
    count and the network."""
    test_features = net.features(test_images)
    n = min(len(generated), len(train))
    subset = np.sort(np.asarray(jax.random.choice(key, len(train), (n,), replace=False)))
    return {
        "fid": metrics.fid_from_features(net.features(generated), test_features),
        "fid_floor": metrics.fid_from_features(net.features(train.gather(subset)["image"]), test_features),
        "fid_samples": len(generated),
        **net.describe(),
    }


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
    """The feature network's recipe, for the models whose results use it (FID, conditional accuracy)."""

    classifier_arch: str = option(
        "conv", "the feature classifier behind the FID and the conditional accuracy: conv, or mlp (cheaper)", choices=ARCHS
    )
    classifier_epochs: int = option(EPOCHS, "epochs of the feature classifier", range=POSITIVE_INT)
    classifier_train_size: int | None = option(
        None, "train the feature classifier on the first N training images (default: all)", range=POSITIVE_INT
    )


def network_for(config, data: Dataset) -> FeatureNetwork:
    """The feature network a run of `config` (whose options include FeatureOptions) scores with."""
    o = config.options
    return network(data, epochs=o.classifier_epochs, train_size=o.classifier_train_size, arch=o.classifier_arch)


def conditional_accuracy(net: FeatureNetwork, images, labels) -> float:
    """The share of `images` (generated for `labels` (N,)) that the network assigns to their label."""
    return float(np.mean(net.predict(images) == np.asarray(labels)))
