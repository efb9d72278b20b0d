"""Image data for jaxae: the built-in MNIST and Fashion-MNIST, and the researcher's own images.

`load_dataset(spec)` returns a `Dataset` (train and test `Split`s of uint8 images (N, H, W, C) and
optional int32 labels) for any of these specs, never touching the network:

- `mnist`, `fashion_mnist`: the built-in datasets, found offline and verified by sha256
  (`jaxae.data.builtin`);
- `PATH.npz`: arrays in the layout of `keras.datasets.*.load_data()` (`jaxae.data.files`);
- `DIR` with `x_train.npy` and `x_test.npy`: the same arrays, memory-mapped;
- `DIR` with `train/<class>/` and `test/<class>/` image folders (ImageFolder);
- `tfds:NAME` or `tfds:NAME:VERSION`: a TFDS dataset prepared as array_record
  (`jaxae.data.tfds_source`).

From Python, `from_arrays(x_train, x_test, y_train, y_test)` wraps arrays already in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxae.data import builtin
from jaxae.data.builtin import NAMES, SPLITS, DataNotFoundError, DataVerificationError, load, prepare
from jaxae.data.dataset import Column, DataFormatError, DataInfo, Dataset, Split, epoch_permutation, from_arrays

__all__ = [
    "NAMES",
    "SPLITS",
    "Column",
    "DataFormatError",
    "DataInfo",
    "DataNotFoundError",
    "DataVerificationError",
    "Dataset",
    "Split",
    "epoch_permutation",
    "from_arrays",
    "load",
    "load_dataset",
    "prepare",
]

SPEC_HELP = (
    "mnist, fashion_mnist, PATH.npz, a folder of x_train.npy/x_test.npy, an image folder (DIR/train/CLASS/*), or tfds:NAME[:VERSION]"
)


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The Dataset named by `spec` (see the module docstring); `data_dir` is where the built-in
    and TFDS datasets are looked for first."""
    if spec in NAMES:
        return builtin.dataset(spec, data_dir)
    if spec.startswith("tfds:"):
        from jaxae.data.tfds_source import load_tfds

        return load_tfds(spec.removeprefix("tfds:"), data_dir)
    from jaxae.data import files

    path = Path(spec).expanduser()
    if path.suffix == ".npz" and path.is_file():
        return files.load_npz(path)
    if path.is_dir():
        return files.load_npy_folder(path) if (path / "x_train.npy").exists() else files.load_image_folder(path)
    if path.suffix == ".npz" or os.sep in spec:
        raise DataNotFoundError(f"no such file or folder: {spec}")
    raise ValueError(f"unknown dataset {spec!r}: use {SPEC_HELP}")
