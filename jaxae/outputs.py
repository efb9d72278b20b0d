"""What a run writes: JSON written atomically, JSON lines appended, PNG image grids.

Every file is created with the mode the umask gives any new file (0o666 & ~umask, 0644 under the
usual umask 022), the atomically replaced ones included.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import numpy as np
from PIL import Image


def _replace_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Creates `path` (and its folder) with what `write` writes to a binary file: first to a new
    temporary file beside it, then renamed over it, so that `path` is never half-written.

    The temporary file is opened with O_CREAT | O_EXCL and mode 0o666, which the umask then
    reduces as for any file (tempfile.mkstemp would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    """Writes `obj` as JSON (indented, sorted keys) to `path` atomically: never half-written."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    _replace_atomically(path, lambda f: f.write(text.encode()))


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
    _replace_atomically(path, lambda f: picture.save(f, format="PNG"))
