"""What a run writes: JSON written atomically, JSON lines appended, PNG image grids."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def write_json(path: str | Path, obj) -> None:
    """Writes `obj` as JSON to `path` atomically (a temporary file, then rename): never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def append_jsonl(path: str | Path, record: dict) -> None:
    """Appends one JSON line to `path`."""
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def image_grid(rows: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of images, each (n, H, W, C) float in [0, 1], -> one uint8 picture (R*(H+pad)+pad,
    n*(W+pad)+pad), grey from the first channel, or (..., 3) RGB from the first three where C >= 3."""
    n = max(len(r) for r in rows)
    h, w, c = rows[0].shape[1:4]
    channels = 3 if c >= 3 else 1
    grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, channels), np.float32)
    for i, row in enumerate(rows):
        for j, image in enumerate(np.asarray(row)):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[top : top + h, left : left + w] = image[..., :channels]
    grid = np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
    return grid if channels == 3 else grid[..., 0]


def save_grid(path: str | Path, rows: Sequence[np.ndarray], scale: int = 2) -> None:
    """Saves `image_grid(rows)` as a PNG, each pixel drawn `scale` times larger; atomic."""
    grid = image_grid(rows)
    picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    picture.save(tmp, format="PNG")
    os.replace(tmp, path)
