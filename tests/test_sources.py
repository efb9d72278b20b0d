"""The researcher's own data: .npz, .npy folders, image folders, TFDS array_record and arrays in
memory, of any shape; bad files refused in one line; streaming gives the same bits as on-device."""

import contextlib
import io
import json

import chex
import numpy as np
import pytest
from conftest import synthetic_images
from PIL import Image

from jaxae import cli, data, runs
from jaxae.config import tiny
from jaxae.data import DataFormatError

ONE_STEP = ["--epochs", "1", "--batch-size", "16", "--train-size", "16", "--test-size", "16", "--no-progress"]


def _write_npz(path, shape=(32, 32, 3), labels=True, n=(48, 24)):
    (x_train, y_train), (x_test, y_test) = synthetic_images(n[0], shape, 3, 0), synthetic_images(n[1], shape, 3, 1)
    arrays = dict(x_train=x_train, x_test=x_test, **(dict(y_train=y_train, y_test=y_test) if labels else {}))
    np.savez(path, **arrays)
    return arrays


def _write_image_folder(root, shape=(20, 24), classes=("cat", "dog"), mode="L", per_class=(6, 3)):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*shape, 3) if mode == "RGB" else shape, dtype=np.uint8)
                Image.fromarray(pixels, mode).save(root / split / c / f"{i}.png")
    return root


def _cli(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    return code, err.getvalue()


def test_npz_round_trip_in_colour_trains_a_step(tmp_path):
    arrays = _write_npz(tmp_path / "photos.npz")
    dataset = data.load_dataset(str(tmp_path / "photos.npz"))
    assert dataset.image_shape == (32, 32, 3) and dataset.classes == ("0", "1", "2")
    np.testing.assert_array_equal(dataset.train.load()["image"], arrays["x_train"])
    np.testing.assert_array_equal(dataset.test.load()["label"], arrays["y_test"])
    code, err = _cli(["train", "--model", "ae", "--dataset", str(tmp_path / "photos.npz"), *ONE_STEP, "--workdir", str(tmp_path / "run")])
    assert code == 0, err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["image_shape"] == [32, 32, 3] and results["dataset"] == str(tmp_path / "photos.npz")
    assert (tmp_path / "run" / "samples.png").exists()


def test_grey_images_without_a_channel_axis_and_without_labels(tmp_path):
    np.savez(tmp_path / "grey.npz", x_train=np.zeros((20, 16, 12), np.uint8), x_test=np.zeros((4, 16, 12), np.uint8))
    dataset = data.load_dataset(str(tmp_path / "grey.npz"))
    assert dataset.image_shape == (16, 12, 1) and dataset.classes is None and dataset.train.labels is None


def test_npy_folder_is_memory_mapped_and_trains_a_step(tmp_path):
    arrays = _write_npz(tmp_path / "a.npz", shape=(16, 16, 1))
    folder = tmp_path / "npy"
    folder.mkdir()
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    dataset = data.load_dataset(str(folder))
    assert isinstance(dataset.train.images, np.memmap) and dataset.image_shape == (16, 16, 1)
    np.testing.assert_array_equal(dataset.train.gather([3, 1])["image"], arrays["x_train"][[3, 1]])
    code, err = _cli(["train", "--model", "vae", "--dataset", str(folder), *ONE_STEP, "--workdir", str(tmp_path / "run")])
    assert code == 0, err


def test_image_folder_of_grey_pngs_trains_a_step(tmp_path):
    root = _write_image_folder(tmp_path / "pets")
    dataset = data.load_dataset(str(root))
    assert dataset.image_shape == (20, 24, 1) and dataset.classes == ("cat", "dog")
    assert list(dataset.train.labels) == [0] * 6 + [1] * 6 and len(dataset.test) == 6
    expected = np.asarray(Image.open(root / "train" / "dog" / "2.png"))
    np.testing.assert_array_equal(dataset.train.images[8, ..., 0], expected)
    code, err = _cli(
        [
            "train",
            "--model",
            "ae",
            "--dataset",
            str(root),
            *ONE_STEP[:2],
            "--batch-size",
            "4",
            "--no-progress",
            "--workdir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0, err


def test_image_folder_takes_the_first_images_colour_mode(tmp_path):
    root = _write_image_folder(tmp_path / "colour", mode="RGB", per_class=(2, 1))
    assert data.load_dataset(str(root)).image_shape == (20, 24, 3)


def test_arrays_in_memory_train_through_the_runner(tmp_path, synthetic):
    dataset = synthetic((16, 16, 3), n_train=64, n_test=16)
    results = runs.train(tiny("dae", arch="mlp", code_size=4, batch_size=16, dataset="own"), tmp_path / "run", data=dataset)
    assert results["image_shape"] == [16, 16, 3] and results["test_images"] == 16 and results["classes"] == 10
    assert results["data_fingerprint"] == dataset.fingerprint


def _tiny_tfds_builder(images, labels):
    """A TFDS builder of a small labelled colour dataset, written as array_record without TensorFlow."""
    import tensorflow_datasets as tfds

    class TinyColour(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        __module__ = "jaxae.tiny_colour"  # TFDS looks for a builder's files beside it, in a package
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=images["train"].shape[1:]), "label": tfds.features.ClassLabel(names=["a", "b", "c"])}
            )
            return self.dataset_info_from_configs(features=features)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            for i, (image, label) in enumerate(zip(images[split], labels[split])):
                yield i, {"image": Image.fromarray(image), "label": int(label)}

    return TinyColour


def test_tfds_array_record_round_trip_trains_a_step(tmp_path):
    (x_train, y_train), (x_test, y_test) = synthetic_images(32, (16, 16, 3), 3, 0), synthetic_images(16, (16, 16, 3), 3, 1)
    builder = _tiny_tfds_builder({"train": x_train, "test": x_test}, {"train": y_train, "test": y_test})
    builder(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(file_format="array_record")
    dataset = data.load_dataset("tfds:tiny_colour:1.0.0", data_dir=tmp_path)
    assert dataset.image_shape == (16, 16, 3) and dataset.classes == ("a", "b", "c") and len(dataset.train) == 32
    loaded = dataset.test.load()
    order = np.lexsort([loaded["image"].reshape(16, -1)[:, i] for i in range(8)])
    expected = np.lexsort([x_test.reshape(16, -1)[:, i] for i in range(8)])
    np.testing.assert_array_equal(loaded["image"][order], x_test[expected])
    np.testing.assert_array_equal(loaded["label"][order], y_test[expected])
    results = runs.train(tiny("ae", arch="mlp", code_size=4, batch_size=16, dataset="tfds"), tmp_path / "run", data=dataset)
    assert results["image_shape"] == [16, 16, 3]


def _mixed_sizes(root):
    _write_image_folder(root)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "train" / "dog" / "odd.png")
    return root / "train" / "dog" / "odd.png", "image is 8x8, but the first image is 24x20"


def _empty_class(root):
    _write_image_folder(root)
    (root / "train" / "bird").mkdir()
    return root / "train" / "bird", "an empty class folder"


def _unreadable(root):
    _write_image_folder(root)
    (root / "test" / "cat" / "1.png").write_bytes(b"not a png")
    return root / "test" / "cat" / "1.png", "cannot read it as an image"


def _npz(**arrays):
    def write(root):
        root.mkdir()
        np.savez(root / "bad.npz", **arrays)
        return root / "bad.npz", None

    return write


@pytest.mark.parametrize(
    "damage,message",
    [
        (_npz(x_train=np.zeros((4, 8, 8), np.uint8)), "no array x_test"),
        (
            _npz(x_train=np.zeros((4, 8, 8), np.float32), x_test=np.zeros((4, 8, 8), np.float32)),
            "x_train has dtype float32; images must be uint8",
        ),
        (
            _npz(x_train=np.zeros((4, 8), np.uint8), x_test=np.zeros((4, 8), np.uint8)),
            "x_train has shape (4, 8); images must be (N, H, W) or (N, H, W, C)",
        ),
        (_npz(x_train=np.zeros((4, 8, 8), np.uint8), x_test=np.zeros((4, 9, 8), np.uint8)), "both splits need one shape"),
        (
            _npz(x_train=np.zeros((4, 8, 8), np.uint8), x_test=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64)),
            "labels for one split only",
        ),
        (
            _npz(
                x_train=np.zeros((4, 8, 8), np.uint8),
                x_test=np.zeros((4, 8, 8), np.uint8),
                y_train=np.zeros(3, np.int64),
                y_test=np.zeros(4, np.int64),
            ),
            "y_train has shape (3,); want one label per image, (4,)",
        ),
        (_mixed_sizes, None),
        (_empty_class, None),
        (_unreadable, None),
    ],
)
def test_a_bad_file_is_one_line_naming_it_and_nothing_is_created(tmp_path, damage, message):
    path, folder_message = damage(tmp_path / "data")
    spec = path if path.suffix == ".npz" else tmp_path / "data"
    workdir = tmp_path / "run"
    code, err = _cli(["train", "--model", "ae", "--arch", "mlp", "--dataset", str(spec), *ONE_STEP, "--workdir", str(workdir)])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(path) in err and (message or folder_message) in err, err
    assert not workdir.exists()


def test_from_arrays_refuses_what_is_not_uint8_images():
    with pytest.raises(DataFormatError, match="x_train has dtype float32"):
        data.from_arrays(np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.float32))
    with pytest.raises(DataFormatError, match="negative label"):
        data.from_arrays(np.zeros((4, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8), np.array([0, 1, -1, 0]), np.zeros(2, int))


@pytest.mark.parametrize("model", ["dae", "vae"])
def test_streaming_from_the_host_gives_the_same_bits_as_on_the_device(tmp_path, synthetic, model):
    dataset = synthetic((16, 16, 1), n_train=128, n_test=32)
    config = tiny(model, arch="mlp", batch_size=16, epochs=2, dataset="own", steps_per_dispatch=3)
    on_device = runs.train(config, tmp_path / "device", data=dataset)
    streamed = runs.train(config.replace(device_data_limit=0.001), tmp_path / "streamed", data=dataset)
    assert (on_device["data_streamed"], streamed["data_streamed"]) == (False, True)
    numbers = [{k: v for k, v in r.items() if isinstance(v, float) and "second" not in k} for r in (on_device, streamed)]
    assert numbers[0] == numbers[1] and numbers[0]
    assert (tmp_path / "device" / "metrics.jsonl").read_text() == (tmp_path / "streamed" / "metrics.jsonl").read_text()


def test_streaming_a_record_source_gathers_each_batch_once(tmp_path, synthetic):
    """A Split read through a record reader (as tfds sources are) streams like any other."""
    dataset = synthetic((16, 16, 1), n_train=64, n_test=16)
    arrays = dataset.train.load()
    reads = []

    def read(indices):
        reads.append(len(indices))
        return {k: v[indices] for k, v in arrays.items()}

    columns = {k: data.Column(v.shape, v.dtype) for k, v in arrays.items()}
    records = data.Dataset("records", data.Split(columns, read), dataset.test, dataset.classes)
    config = tiny("ae", arch="mlp", code_size=4, batch_size=16, dataset="own", steps_per_dispatch=2)
    streamed = runs.train(config.replace(device_data_limit=0.001), tmp_path / "records", data=records)
    in_memory = runs.train(config, tmp_path / "memory", data=dataset)
    assert streamed["data_streamed"] and streamed["test_mse"] == in_memory["test_mse"]
    assert reads.count(32) == 2  # two dispatches of 2 x 16 examples, each gathered once
    chex.assert_trees_all_equal(records.train.gather(np.arange(5)), dataset.train.gather(np.arange(5)))
