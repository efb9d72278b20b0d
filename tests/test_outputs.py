"""What a run writes: files created with the umask's ordinary mode, atomically, and readable back."""

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from jaxae import outputs


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    """Runs the test under each umask, then puts the process's umask back."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_mode_of_any_new_file(tmp_path, umask):
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("")
    outputs.write_json(tmp_path / "out" / "results.json", {"b": 1.5, "a": [1, 2]})
    outputs.append_jsonl(tmp_path / "metrics.jsonl", {"step": 8})
    outputs.save_grid(tmp_path / "samples.png", [np.zeros((3, 4, 4, 1), np.float32)])
    expected = 0o666 & ~umask
    assert _mode(ordinary) == expected
    for name in ("out/results.json", "metrics.jsonl", "samples.png"):
        assert _mode(tmp_path / name) == expected, name


def test_write_json_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "results.json"
    outputs.write_json(path, {"run": 1})
    outputs.write_json(path, {"run": 2, "loss": 0.25})
    assert json.loads(path.read_text()) == {"loss": 0.25, "run": 2}
    assert path.read_text().endswith("}\n")
    with pytest.raises(TypeError):
        outputs.write_json(path, {"run": object()})  # not JSON: the file written before stays
    assert json.loads(path.read_text()) == {"loss": 0.25, "run": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_save_grid_writes_the_picture(tmp_path):
    rows = [np.full((2, 4, 4, 1), 0.0, np.float32), np.full((3, 4, 4, 1), 1.0, np.float32)]
    outputs.save_grid(tmp_path / "grid.png", rows, scale=3)
    picture = np.asarray(Image.open(tmp_path / "grid.png"))
    assert picture.shape == (3 * (2 * 6 + 2), 3 * (3 * 6 + 2))
    np.testing.assert_array_equal(picture[::3, ::3], outputs.image_grid(rows))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]
