"""The researcher's own files as Datasets: a .npz archive, a folder of .npy files, an ImageFolder.

- `PATH.npz` in the layout of `keras.datasets.*.load_data()` saved with `np.savez`: `x_train`
  and `x_test` uint8 (N, H, W) or (N, H, W, C), optional integer `y_train` and `y_test`.
- `DIR` holding `x_train.npy` and `x_test.npy` (and optionally `y_train.npy`, `y_test.npy`): the
  same arrays as separate .npy files, memory-mapped, so that the images need not fit in memory.
- `DIR` in the ImageFolder layout, `DIR/train/<class>/*` and `DIR/test/<class>/*`: any image
  Pillow reads, all of one size; the colour mode is the first image's (L for grey, else RGB);
  classes are the folder names in sorted order. Hidden files (starting with ".") are skipped.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from jaxae.data.dataset import DataFormatError, Dataset, Split, from_arrays

NPY_NAMES = ("x_train", "x_test", "y_train", "y_test")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def load_npz(path: Path) -> Dataset:
    """The Dataset in a .npz archive (read into memory)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataFormatError(f"{path}: cannot read it as a .npz archive ({err})") from None
    with archive:
        missing = [k for k in ("x_train", "x_test") if k not in archive.files]
        if missing:
            raise DataFormatError(
                f"{path}: no array {' or '.join(missing)} (it holds {', '.join(archive.files) or 'nothing'}); "
                "save it with np.savez(path, x_train=..., x_test=..., y_train=..., y_test=...)"
            )
        arrays = {}
        for key in NPY_NAMES:
            if key in archive.files:
                try:
                    arrays[key] = archive[key]
                except (ValueError, OSError, zipfile.BadZipFile) as err:
                    raise DataFormatError(f"{path}: cannot read its array {key} ({err})") from None
    return from_arrays(**arrays, name=str(path))


def load_npy_folder(folder: Path) -> Dataset:
    """The Dataset in a folder of .npy files, memory-mapped read-only."""
    arrays = {}
    for key in NPY_NAMES:
        file = folder / f"{key}.npy"
        if file.exists():
            try:
                arrays[key] = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise DataFormatError(f"{file}: cannot read it as a .npy array ({err})") from None
        elif key.startswith("x"):
            raise DataFormatError(f"{folder}: no {key}.npy; a folder of .npy files needs x_train.npy and x_test.npy")
    labels = {k: np.asarray(v) for k, v in arrays.items() if k.startswith("y")}
    return from_arrays(**{**arrays, **labels}, name=str(folder))


def load_image_folder(folder: Path) -> Dataset:
    """The Dataset of an ImageFolder tree, decoded into memory."""
    train_dir, test_dir = folder / "train", folder / "test"
    for split_dir in (train_dir, test_dir):
        if not split_dir.is_dir():
            raise DataFormatError(f"{folder}: no folder {split_dir.name}/; an image folder holds train/<class>/* and test/<class>/*")
    classes = _class_names(train_dir)
    unknown = sorted(set(_class_names(test_dir)) - set(classes))
    if unknown:
        raise DataFormatError(f"{test_dir}: classes {', '.join(unknown)} have no training images in {train_dir}")
    first = _files(train_dir / classes[0])[0]
    mode = "L" if _open(first).mode in GREY_MODES else "RGB"
    size = _open(first).size
    splits = [_read_split(d, classes, mode, size) for d in (train_dir, test_dir)]
    return Dataset(str(folder), Split(splits[0]), Split(splits[1]), tuple(classes))


def _class_names(split_dir: Path) -> list[str]:
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataFormatError(f"{split_dir}: no class folders; put each class's images in {split_dir}/<class>/")
    return names


def _files(class_dir: Path) -> list[Path]:
    files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataFormatError(f"{class_dir}: an empty class folder; remove it or add its images")
    return files


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataFormatError(f"{path}: cannot read it as an image ({err})") from None
    return image


def _read_split(split_dir: Path, classes: list[str], mode: str, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """{"image": uint8 (N, H, W, C), "label": int32 (N,)} of one split, classes in order."""
    images, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        for path in _files(class_dir):
            image = _open(path)
            if image.size != size:
                raise DataFormatError(
                    f"{path}: image is {image.size[0]}x{image.size[1]}, but the first image is "
                    f"{size[0]}x{size[1]}; all images of a folder need one size (W x H)"
                )
            images.append(np.asarray(image.convert(mode), np.uint8))
            labels.append(label)
    stacked = np.stack(images)
    return {"image": stacked[..., None] if stacked.ndim == 3 else stacked, "label": np.asarray(labels, np.int32)}
