"""The FID's feature network: a small classifier per dataset, trained here once and cached.

No pretrained weights are available offline, so the project trains its own: `Classifier` on the
whole training split (Adam 1e-3, batch 128, 2 epochs, seeded), scored on the test split. Its
parameters and test accuracy are cached as one .npz file per (dataset, architecture, recipe,
seed) under $JAXAE_CACHE_DIR, default ~/.cache/jaxae/features/; later calls (any process) load it.
Features are the classifier's penultimate activations, (N, 128) float32.

    jaxae.features.fid("mnist", generated, test_images)        # a float, squared feature units
    jaxae.features.network("mnist").describe()                 # name and accuracy, for results
"""
from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxae import data, metrics
from jaxae.models.classifier import Classifier
from jaxae.objectives import to_float
from jaxae.train.state import create_train_state

EPOCHS = 2
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
APPLY_BATCH = 1000  # images per batch when extracting features


def cache_dir() -> Path:
    """$JAXAE_CACHE_DIR if set, else ~/.cache/jaxae/features."""
    return Path(os.environ.get("JAXAE_CACHE_DIR") or Path.home() / ".cache" / "jaxae" / "features")


@functools.partial(jax.jit, static_argnames=("model", "method", "size"))
def _map_batches(model: Classifier, method: str, params, images: jax.Array, size: int) -> jax.Array:
    """model.<method> over images (N, H, W, C) in batches of `size`; N a multiple of it."""
    batches = images.reshape(-1, size, *images.shape[1:])
    out = jax.lax.map(lambda batch: model.apply({"params": params}, to_float(batch), method=method), batches)
    return out.reshape(images.shape[0], *out.shape[2:])


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNetwork:
    """A trained classifier: its name (dataset, architecture, recipe, seed), test accuracy, params."""

    name: str
    dataset: str
    accuracy: float
    model: Classifier
    params: dict

    def features(self, images) -> np.ndarray:
        """Penultimate activations (N, embedding) float32 of images (N, 28, 28, 1), uint8 or float in [0, 1]."""
        return self._apply("embed", images)

    def predict(self, images) -> np.ndarray:
        """Class indices (N,) of images (N, 28, 28, 1), uint8 or float in [0, 1]."""
        return np.argmax(self._apply("__call__", images), axis=-1)

    def describe(self) -> dict:
        """What a results file records about the network: its name and test accuracy."""
        return {"feature_network": self.name, "classifier_accuracy": self.accuracy}

    def _apply(self, method: str, images) -> np.ndarray:
        """`_map_batches` for any N: pads to a multiple of the batch size and drops the padding."""
        images = np.asarray(images)
        size = min(APPLY_BATCH, len(images))
        padded = np.concatenate([images, np.zeros((-len(images) % size, *images.shape[1:]), images.dtype)])
        return np.asarray(_map_batches(self.model, method, self.params, jnp.asarray(padded), size))[: len(images)]


def train_classifier(model: Classifier, images: np.ndarray, labels: np.ndarray, seed: int, epochs: int) -> dict:
    """Trains `model` on uint8 images (N, 28, 28, 1) and int labels (N,); returns its params."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    state = create_train_state(model, optax.adam(LEARNING_RATE), init_key, jnp.zeros((1, *images.shape[1:])))

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, images, labels):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, to_float(images))
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    # One jitted step per batch, not a lax.scan: XLA:CPU runs conv gradients in a loop ~30x slower.
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    for epoch in range(epochs):
        for indices in data.epoch_permutation(data_key, len(images), BATCH_SIZE, epoch):
            state = train_step(state, images[indices], labels[indices])
    return jax.device_get(state.params)


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


def network(dataset: str, seed: int = 0, epochs: int = EPOCHS, train_size: int | None = None) -> FeatureNetwork:
    """The feature network of `dataset`: loaded from the cache, else trained and cached (the
    default recipe, all training images for EPOCHS epochs, takes a minute or two on CPU).

    `epochs` and `train_size` (the first n training images) exist for quick tests; they, the seed
    and the architecture are all part of the network's name and cache file.
    """
    return _network(dataset, seed, epochs, train_size, cache_dir())


@functools.cache
def _network(dataset: str, seed: int, epochs: int, train_size: int | None, folder: Path) -> FeatureNetwork:
    """A file lock makes concurrent processes train a network once; the others wait and load it."""
    model = Classifier()
    subset = "" if train_size is None else f"-first{train_size}"
    name = f"classifier-{dataset}-{model.name_tag}-adam{epochs}ep{subset}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    with open(folder / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            images, labels = data.load(dataset, "train")
            params = train_classifier(model, images[:train_size], labels[:train_size], seed, epochs)
            test_images, test_labels = data.load(dataset, "test")
            untested = FeatureNetwork(name, dataset, float("nan"), model, params)
            _save(path, params, float(np.mean(untested.predict(test_images) == test_labels)))
    params, accuracy = _load(path)
    return FeatureNetwork(name, dataset, accuracy, model, params)


def features(dataset: str, images) -> np.ndarray:
    """Penultimate features (N, 128) float32 of `dataset`'s feature network for images (N, 28, 28, 1)."""
    return network(dataset).features(images)


def fid(dataset: str, images_a, images_b) -> float:
    """Fréchet distance between two image sets (uint8 or float in [0, 1]) in `dataset`'s features."""
    net = network(dataset)
    return metrics.fid_from_features(net.features(images_a), net.features(images_b))


def sample_scores(dataset: str, generated, train_images: np.ndarray, test_images: np.ndarray, key: jax.Array) -> dict:
    """fid (generated vs test images), fid_floor (as many training images, a random subset drawn
    from `key`, vs test: what a perfect generator would score), the sample count and the network."""
    net = network(dataset)
    test_features = net.features(test_images)
    n = min(len(generated), len(train_images))
    subset = np.sort(np.asarray(jax.random.choice(key, len(train_images), (n,), replace=False)))
    return {
        "fid": metrics.fid_from_features(net.features(generated), test_features),
        "fid_floor": metrics.fid_from_features(net.features(train_images[subset]), test_features),
        "fid_samples": len(generated),
        **net.describe(),
    }
