"""`tfds:NAME[:VERSION]`: a TFDS image dataset prepared as array_record, read with
`tfds.data_source` (random access, no TensorFlow), its examples decoded only when gathered.

The dataset needs an `image` feature of fixed shape (H, W, C) and uint8 pixels, and may have a
`label` ClassLabel feature; its splits `train` and `test` are used, in TFDS's record order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxae.data.builtin import TFDS_DIR, DataNotFoundError
from jaxae.data.dataset import Column, DataFormatError, Dataset, Split


def load_tfds(spec: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The Dataset `NAME` or `NAME:VERSION` (without the `tfds:` prefix) under `data_dir`
    (default $TFDS_DATA_DIR or ~/tensorflow_datasets)."""
    import tensorflow_datasets as tfds

    folder = Path(data_dir).expanduser() if data_dir else TFDS_DIR
    try:
        sources = {split: tfds.data_source(spec, split=split, data_dir=os.fspath(folder), download=False) for split in ("train", "test")}
    except Exception as err:  # TFDS raises many kinds for a missing or unprepared dataset
        raise DataNotFoundError(
            f"no prepared TFDS dataset {spec!r} with train and test splits in {folder} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); prepare it there as array_record, or set TFDS_DATA_DIR"
        ) from None
    features = sources["train"].dataset_info.features
    image = features["image"] if "image" in features else None
    if image is None or None in tuple(image.shape) or np.dtype(image.np_dtype) != np.uint8:
        described = "no image feature" if image is None else f"image feature {tuple(image.shape)} {image.np_dtype}"
        raise DataFormatError(f"tfds:{spec}: has {described}; jaxae needs an `image` feature of fixed shape (H, W, C), uint8")
    label = features["label"] if "label" in features else None
    splits = {name: _split(source, tuple(image.shape), label is not None) for name, source in sources.items()}
    classes = tuple(label.names) if label is not None else None
    return Dataset(f"tfds:{spec}", splits["train"], splits["test"], classes)


def _split(source, image_shape: tuple[int, ...], labelled: bool) -> Split:
    """A Split whose columns are decoded from `source`'s records when gathered."""
    n = len(source)
    columns = {"image": Column((n, *image_shape), np.dtype(np.uint8))}
    if labelled:
        columns["label"] = Column((n,), np.dtype(np.int32))

    def read(indices: np.ndarray) -> dict[str, np.ndarray]:
        records = source.__getitems__([int(i) for i in indices])
        batch = {"image": np.stack([np.asarray(r["image"], np.uint8) for r in records]).reshape(len(records), *image_shape)}
        if labelled:
            batch["label"] = np.asarray([r["label"] for r in records], np.int32)
        return batch

    return Split(columns, read)
