"""Datasets as the library sees them: a train and a test `Split` of uint8 images (N, H, W, C) with
optional int32 labels (N,), whatever the source.

A split's columns ("image", and "label" where there are labels) are numpy arrays, memory-mapped
.npy files, or columns of a record source that decodes examples only when they are gathered
(`Split.read`). `Split.gather(indices)` returns one batch as a dict of numpy arrays, the pytree
that objectives receive as `batch`; `Split.load()` returns the whole split in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

FINGERPRINT_IMAGES = 1024  # images hashed (evenly spaced) for a dataset's fingerprint


class DataFormatError(ValueError):
    """A data source is malformed: the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class Column:
    """The shape and dtype of a column whose values a record source decodes on demand."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split: `columns` {"image": uint8 (N, H, W, C), optionally "label": int32 (N,)}.

    `read(indices) -> {name: array}` gathers examples from a record source whose columns are
    `Column`s; without it, columns are indexed directly (numpy arrays or memory maps).
    """

    columns: dict[str, Any]
    read: Callable[[np.ndarray], dict] | None = None

    @property
    def images(self):
        return self.columns["image"]

    @property
    def labels(self):
        return self.columns.get("label")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole split in memory."""
        return sum(int(c.nbytes) for c in self.columns.values())

    def gather(self, indices) -> dict[str, np.ndarray]:
        """The examples at `indices` (int array of any shape, rows first), one numpy array per column."""
        indices = np.asarray(indices)
        if self.read is not None:
            flat = self.read(indices.reshape(-1))
            return {k: v.reshape(*indices.shape, *v.shape[1:]) for k, v in flat.items()}
        return {k: np.asarray(c[indices]) for k, c in self.columns.items()}

    def load(self) -> dict[str, np.ndarray]:
        """Every example in memory, in order."""
        if self.read is None:
            return {k: np.asarray(c) for k, c in self.columns.items()}
        chunks = [self.read(np.arange(i, min(i + 4096, len(self)))) for i in range(0, len(self), 4096)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in self.columns}

    def take(self, n: int | None) -> "Split":
        """The first n examples (all of them for None)."""
        if n is None or n >= len(self):
            return self
        if self.read is not None:
            columns = {k: Column((n, *c.shape[1:]), c.dtype) for k, c in self.columns.items()}
            return Split(columns, self.read)
        return Split({k: c[:n] for k, c in self.columns.items()})


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A named dataset: train and test splits of one image shape, and the class names in label
    order (None where the data has no labels)."""

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...] | None = None
    whole: "Dataset | None" = None  # the dataset this one is a subset of (None: it is whole)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    @property
    def info(self) -> "DataInfo":
        return DataInfo(self.image_shape, self.num_classes, len(self.train), len(self.test))

    def subset(self, train_size: int | None, test_size: int | None) -> "Dataset":
        """The first train_size training and test_size test examples (None: all); its `whole` is
        the full dataset."""
        whole = self.whole or self
        return dataclasses.replace(self, train=self.train.take(train_size), test=self.test.take(test_size), whole=whole)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short sha256 of the shapes, the labels and evenly spaced images of both splits: equal
        for equal data, and cheap for data larger than memory."""
        digest = hashlib.sha256(repr((self.image_shape, self.classes)).encode())
        for split in (self.train, self.test):
            n = len(split)
            picked = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_IMAGES)).astype(np.int64))
            batch = split.gather(picked)
            digest.update(np.int64(n).tobytes())
            digest.update(np.ascontiguousarray(batch["image"]).tobytes())
            if split.labels is not None:
                labels = split.load()["label"] if split.read is None else batch["label"]
                digest.update(np.ascontiguousarray(labels, np.int32).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        """What a results file records about the data."""
        return {
            "dataset": self.name,
            "image_shape": list(self.image_shape),
            "classes": self.num_classes,
            "data_fingerprint": self.fingerprint,
        }


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What models and rules need to know of a dataset: image shape (H, W, C), the number of
    classes (None without labels), and the sizes of the splits."""

    image_shape: tuple[int, int, int]
    num_classes: int | None
    train_size: int
    test_size: int


def as_images(array, what: str) -> np.ndarray:
    """`array` as uint8 images (N, H, W, C): a channel axis is added to (N, H, W); anything else
    raises DataFormatError naming `what`."""
    shape, dtype = np.shape(array), getattr(array, "dtype", None)
    if dtype != np.uint8:
        raise DataFormatError(f"{what} has dtype {dtype}; images must be uint8 (0..255): scale floats by 255 and use .astype(np.uint8)")
    if len(shape) == 3:
        return array[..., None]
    if len(shape) != 4:
        raise DataFormatError(f"{what} has shape {shape}; images must be (N, H, W) or (N, H, W, C)")
    if 0 in shape:
        raise DataFormatError(f"{what} has shape {shape}: it holds no images")
    return array


def as_labels(array, count: int, what: str) -> np.ndarray:
    """`array` as int32 labels (count,) with values >= 0, else DataFormatError naming `what`."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise DataFormatError(f"{what} has dtype {array.dtype}; labels must be integers")
    array = array.reshape(-1) if array.ndim == 2 and array.shape[1] == 1 else array
    if array.shape != (count,):
        raise DataFormatError(f"{what} has shape {array.shape}; want one label per image, ({count},)")
    if array.size and array.min() < 0:
        raise DataFormatError(f"{what} holds the negative label {array.min()}; labels are class indices 0, 1, ...")
    return array.astype(np.int32)


def from_arrays(x_train, x_test, y_train=None, y_test=None, *, name: str = "arrays", classes: tuple[str, ...] | None = None) -> Dataset:
    """A Dataset from arrays: images uint8 (N, H, W) or (N, H, W, C) (numpy arrays or memory maps),
    integer labels (N,) for both splits or for neither. `classes` names the labels; by default
    "0" .. str(max label) over both splits."""
    train, test = as_images(x_train, f"{name}: x_train"), as_images(x_test, f"{name}: x_test")
    if train.shape[1:] != test.shape[1:]:
        raise DataFormatError(
            f"{name}: x_train images are {train.shape[1:]} but x_test images are {test.shape[1:]}; both splits need one shape"
        )
    if (y_train is None) != (y_test is None):
        raise DataFormatError(f"{name}: labels for one split only; give y_train and y_test, or neither")
    if y_train is None:
        return Dataset(name, Split({"image": train}), Split({"image": test}))
    labels = as_labels(y_train, len(train), f"{name}: y_train"), as_labels(y_test, len(test), f"{name}: y_test")
    count = int(max(labels[0].max(initial=0), labels[1].max(initial=0))) + 1
    classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(count))
    if len(classes) < count:
        raise DataFormatError(f"{name}: labels go up to {count - 1} but only {len(classes)} class names are given")
    return Dataset(name, Split({"image": train, "label": labels[0]}), Split({"image": test, "label": labels[1]}), classes)


def epoch_permutation(key, num_examples: int, batch_size: int, epoch):
    """int32 indices (num_examples // batch_size, batch_size) shuffling one epoch.

    The permutation is `jax.random.permutation(fold_in(key, epoch), num_examples)`; the last
    `num_examples % batch_size` indices are dropped. `epoch` may be traced.
    """
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"Need 0 < batch_size <= num_examples, got {batch_size} and {num_examples}.")
    return _epoch_permutation(key, num_examples, batch_size, epoch)


@functools.partial(jax.jit, static_argnames=("num_examples", "batch_size"))
def _epoch_permutation(key, num_examples: int, batch_size: int, epoch):
    num_batches = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return perm[: num_batches * batch_size].reshape(num_batches, batch_size).astype(jnp.int32)
