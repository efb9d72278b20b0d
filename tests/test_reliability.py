"""Reliability: resumed and killed runs, NaN or Inf in training, bad input from the user."""

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from cli_calls import assert_one_line, cli_result

from jaxae import cli, data, runs
from jaxae.config import config_differences, tiny
from jaxae.data import DataInfo
from jaxae.objectives import reconstruction
from jaxae.runs.common import RunDir
from jaxae.specs.autoencoder import init
from jaxae.train.checkpoint import CheckpointMismatchError, Checkpoints
from jaxae.train.loop import NonFiniteError, fit
from jaxae.train.step import make_train_step

TIMINGS = ("steps_per_second", "compile_seconds", "train_seconds", "steps")  # per process, not per run
CONFIG = tiny("ae", arch="mlp", code_size=8, epochs=2)
CLI_ARGS = [
    "--model",
    "ae",
    "--arch",
    "mlp",
    "--code-size",
    "8",
    "--batch-size",
    "32",
    "--train-size",
    "256",
    "--test-size",
    "64",
    "--steps-per-dispatch",
    "4",
    "--no-progress",
]


def _numbers(results: dict) -> dict:
    return {k: v for k, v in results.items() if not isinstance(v, dict) and k not in TIMINGS}


def _latest_state(workdir) -> dict:
    folder = workdir / "checkpoints"
    step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore((folder / str(step) / "state").absolute())


def _files(folder) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_straight_and_resumed_runs_are_identical(tmp_path):
    config = CONFIG.replace(schedule="constant")  # a cosine schedule spans the epochs of the first command
    straight = runs.train(config, str(tmp_path / "straight"))
    runs.train(config.replace(epochs=1), str(tmp_path / "resumed"))
    resumed = runs.train(config.replace(resume=True), str(tmp_path / "resumed"))
    assert _numbers(resumed) == _numbers(straight)
    assert resumed["steps"] == straight["steps"] // 2
    chex.assert_trees_all_equal(_latest_state(tmp_path / "resumed"), _latest_state(tmp_path / "straight"))
    lines = [(d / "metrics.jsonl").read_text() for d in (tmp_path / "straight", tmp_path / "resumed")]
    assert lines[0] == lines[1] and lines[0].count("\n") == 2


def test_a_run_killed_with_sigkill_resumes(tmp_path):
    """8 steps per epoch in dispatches of 4, with --checkpoint-every 3: checkpoints at each epoch's
    end and mid-epoch (at the end of the dispatch that reaches 3, 6, 9, ...), so the kill may land
    within an epoch or at its end."""
    workdir, epochs, checkpoint_every = tmp_path / "run", 8, 3
    command = [sys.executable, "-m", "jaxae.cli", "train", *CLI_ARGS, "--epochs", str(epochs), "--workdir", str(workdir)]
    command += ["--checkpoint-every", str(checkpoint_every)]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}  # as in this process
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*")) and process.poll() is None:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.2))  # anywhere in the next epochs: training, saving or deleting
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (workdir / "results.json").exists()

    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = json.loads((workdir / "results.json").read_text())
    straight = runs.train(CONFIG.replace(epochs=epochs, checkpoint_every=checkpoint_every), str(tmp_path / "straight"))
    assert 0 < resumed["steps"] < straight["steps"]
    assert _numbers(resumed) == _numbers(straight)
    assert (workdir / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [56, 60, 64]


def test_resuming_within_an_epoch_is_exact():
    """Resumed from each checkpoint taken within an epoch, with that epoch's metrics so far, fit
    ends with the straight run's state and epoch means."""
    images = {"image": data.load("mnist", "train")[0][:256]}
    options = dict(key=jax.random.key(1), epochs=2, batch_size=32, steps_per_dispatch=2, progress=False)
    step = make_train_step(reconstruction())
    taken = []
    straight = fit(_initial_state(), step, images, checkpoint_every=3, on_checkpoint=lambda s, m: taken.append((s, m)), **options)
    assert [int(s.step) for s, _ in taken] == [4, 6, 10, 12] and [len(m["loss"]) for _, m in taken] == [4, 6, 2, 4]
    for state, so_far in taken:
        resumed = fit(state, step, images, epoch_so_far=so_far, **options)
        chex.assert_trees_all_equal(resumed.state, straight.state)
        assert resumed.history == straight.history[int(state.step) // 8 :]


def test_resume_skips_what_a_kill_left_half_written(tmp_path):
    runs.train(CONFIG, str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    half = checkpoints / "24.orbax-checkpoint-tmp"  # a save cut off before Orbax's final rename
    shutil.copytree(checkpoints / "16", half)
    (half / "state" / "_METADATA").write_text("{")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "lo')  # an append cut off mid-line

    with RunDir(tmp_path, CONFIG.replace(epochs=3, resume=True)) as run:
        state = run.start(_initial_state(), 8)
        assert int(state.step) == 16 and not half.exists()
        assert [r["step"] for r in run.history()] == [8, 16]
    chex.assert_tree_all_finite(state.params)


def _initial_state():
    return init(CONFIG, DataInfo((28, 28, 1), 10, 256, 64), 256 // CONFIG.batch_size, jax.random.key(0))


def _poisoned_step(at_step: int, what: str):
    """A train step that puts NaN in the loss, or Inf in the parameters, at step `at_step`."""
    step = make_train_step(reconstruction())

    def poisoned(state, batch, key):
        state, metrics = step(state, batch, key)
        hit = state.step == at_step
        if what == "loss":
            return state, {**metrics, "loss": jnp.where(hit, jnp.nan, metrics["loss"])}
        return state.replace(params=jax.tree.map(lambda p: jnp.where(hit, jnp.inf, p), state.params)), metrics

    return poisoned


@pytest.mark.parametrize(
    "at_step,what,message",
    [
        (6, "loss", "diverged at step 6 (epoch 1): loss nan"),
        (11, "params", "diverged at step 12 (epoch 2)"),
        (16, "params", "parameters or optimizer state hold NaN or Inf after step 16 (epoch 2)"),
    ],
)
def test_non_finite_training_stops_and_keeps_the_good_checkpoint(tmp_path, at_step, what, message):
    images = {"image": data.load("fashion_mnist", "train")[0][:256]}
    with RunDir(tmp_path, CONFIG) as run:
        with pytest.raises(NonFiniteError, match=message.replace("(", r"\(").replace(")", r"\)")):
            fit(
                run.start(_initial_state(), 8),
                _poisoned_step(at_step, what),
                images,
                key=jax.random.key(0),
                epochs=2,
                batch_size=32,
                steps_per_dispatch=4,
                progress=False,
                on_log=run.log,
            )
        saved = [] if at_step <= 8 else [8]
        assert [r["step"] for r in run.history()] == saved
        assert run.checkpoints.latest_step() == (saved[-1] if saved else None)
    if saved:
        chex.assert_tree_all_finite(_latest_state(tmp_path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny ae run's workdir."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(["train", *CLI_ARGS, "--epochs", "1", "--workdir", str(workdir)]) == 0
    return workdir


def _state_dir(workdir):
    """The saved state of the `trained` run's last checkpoint (step 8)."""
    return workdir / "checkpoints" / "8" / "state"


def _state_files(workdir):
    return _state_dir(workdir).rglob("d/*")


def _break_checkpoint(workdir) -> None:
    for chunk in _state_files(workdir):
        chunk.write_bytes(b"not a checkpoint")


def _flip_a_byte_in_each_file(workdir) -> None:
    """Same sizes; the b-tree nodes among the files then fail their checksum."""
    for chunk in _state_files(workdir):
        content = bytearray(chunk.read_bytes())
        content[len(content) // 2] ^= 0xFF
        chunk.write_bytes(bytes(content))


def _array_files(workdir) -> list:
    """The two largest OCDBT data files of the saved state: they hold the array chunks."""
    return sorted(_state_files(workdir), key=lambda path: path.stat().st_size)[-2:]


def _flip_8_bytes_in_the_array_files(workdir) -> None:
    """Same sizes and b-tree nodes; the arrays' bytes change."""
    for chunk in _array_files(workdir):
        content = bytearray(chunk.read_bytes())
        middle = len(content) // 2
        content[middle : middle + 8] = bytes(b ^ 0xFF for b in content[middle : middle + 8])
        chunk.write_bytes(bytes(content))


def _zero_4_kb_of_the_largest_file(workdir) -> None:
    """A zeroed disk page in the middle of the array data (the end of a file may be unused bytes)."""
    chunk = _array_files(workdir)[-1]
    content = bytearray(chunk.read_bytes())
    middle = len(content) // 2 - 2048
    assert any(content[middle : middle + 4096]), "the page is zero already: this damage would change nothing"
    content[middle : middle + 4096] = bytes(4096)
    chunk.write_bytes(bytes(content))


def _drop_manifest(workdir) -> None:
    (_state_dir(workdir) / "manifest.ocdbt").unlink()


@pytest.mark.parametrize(
    "args,damage,message",
    [
        (["--model", "dae", "--resume"], None, "from another config (model: checkpoint 'ae' vs now 'dae'"),
        (["--code-size", "4", "--resume"], None, "code_size: checkpoint 8 vs now 4"),
        (["--resume"], _break_checkpoint, "cannot read the checkpoint at step 8"),
        (["--resume"], _flip_a_byte_in_each_file, "CRC-32C checksum verification failed"),
        (["--resume"], _drop_manifest, "no saved arrays in"),
        (["--resume"], _flip_8_bytes_in_the_array_files, "the checkpoint at step 8 in"),
        (["--resume"], _zero_4_kb_of_the_largest_file, "the checkpoint at step 8 in"),
        ([], None, "already holds a run (checkpoints, metrics.jsonl, results.json): add --resume to continue it"),
    ],
)
# Orbax's concurrent restore of a damaged checkpoint once left reads in flight that printed
# 'Event loop is closed' tracebacks; jaxae.train.checkpoint now reads it one key at a time first.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_bad_workdir_is_one_line_and_loses_nothing(tmp_path, trained, args, damage, message):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    if damage:
        damage(workdir)
    before = _files(workdir)
    code, err = cli_result(["train", *CLI_ARGS, "--epochs", "2", *args, "--workdir", str(workdir)])
    assert_one_line(code, err, message)
    assert _files(workdir) == before


def test_resuming_a_finished_run_writes_strict_json(tmp_path, trained):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    assert cli.main(["train", *CLI_ARGS, "--epochs", "1", "--resume", "--workdir", str(workdir)]) == 0

    def refuse(constant):
        raise ValueError(f"results.json holds {constant}, which is not JSON")

    results = json.loads((workdir / "results.json").read_text(), parse_constant=refuse)
    assert results["steps"] == 0 and results["steps_per_second"] is None


def test_workdir_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("kept")
    code, err = cli_result(["train", *CLI_ARGS, "--workdir", str(blocker / "run")])
    assert_one_line(code, err, f"cannot write to the workdir {blocker / 'run'}")
    assert blocker.read_text() == "kept"


def _idx(images: np.ndarray, magic: int = 0x803) -> bytes:
    """An IDX file's bytes: big-endian magic and dims, then the raw array."""
    return np.array([magic, *images.shape], ">u4").tobytes() + images.tobytes()


def _damaged_files():
    images = np.array(data.load("fashion_mnist", "train")[0][..., 0])
    flipped = images.copy()
    flipped[0, 0, 0] ^= 1
    return {
        "truncated": (gzip.compress(_idx(images), compresslevel=1)[:5000], "as gzip"),
        "corrupt": (gzip.compress(_idx(flipped), compresslevel=1), "differ from the published data"),
        "shape": (gzip.compress(_idx(np.zeros((10, 32, 32), np.uint8))), "not a complete IDX file of uint8 images"),
        "dtype": (gzip.compress(_idx(np.zeros((10, 28, 28), np.float32), magic=0xD03)), "not a complete IDX file"),
    }


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "shape", "dtype"])
def test_bad_data_file_is_one_line(tmp_path, monkeypatch, damage):
    content, message = _damaged_files()[damage]
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        os.symlink(data.builtin.DEBIAN_FASHION_MNIST_DIR / name, tmp_path / name)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(content)
    monkeypatch.setenv("JAXAE_DATA_DIR", str(tmp_path))
    code, err = cli_result(["train", *CLI_ARGS, "--dataset", "fashion_mnist", "--workdir", str(tmp_path / "run")])
    assert_one_line(code, err, message)
    assert "train-images-idx3-ubyte.gz" in err and "Replace or delete it" in err


def test_fields_added_later_count_as_their_defaults():
    old = {k: v for k, v in CONFIG.to_dict().items() if k not in ("device_data_limit", "checkpoint_every")}
    assert config_differences(old, CONFIG) == []
    assert config_differences(old, CONFIG.replace(checkpoint_every=5, code_size=4)) == ["checkpoint_every", "code_size"]
    assert config_differences(CONFIG.to_dict(), CONFIG.replace(resume=True), ignore=("resume",)) == []


def test_a_field_added_later_counts_as_what_its_model_did_before():
    """GAN runs trained with Adam b1 0.5 before `adam_b1` existed (its default is 0 now); ae runs
    with optax's 0.9."""
    for model, before in (("gan", 0.5), ("ae", 0.9)):
        current = tiny(model, adam_b1=before)
        old = {k: v for k, v in current.to_dict().items() if k != "adam_b1"}
        assert config_differences(old, current) == []
        assert config_differences(old, current.replace(adam_b1=0.25)) == ["adam_b1"]
    assert tiny("gan").adam_b1 == 0.0


def _as_before(checkpoint, field: str) -> None:
    """Rewrites a saved config as one written before `field` existed (and before digests were)."""
    saved = checkpoint / "config" / "metadata"
    saved.write_text(json.dumps({k: v for k, v in json.loads(saved.read_text()).items() if k != field}))
    shutil.rmtree(checkpoint / "digest")


def test_a_mismatch_in_a_field_added_later_names_its_default(tmp_path):
    writer = Checkpoints(tmp_path, CONFIG)
    writer.save(_initial_state())
    writer.close()
    _as_before(tmp_path / "0", "micro_batches")
    reader = Checkpoints(tmp_path, CONFIG.replace(micro_batches=2))
    with pytest.raises(CheckpointMismatchError, match="micro_batches: checkpoint 1 vs now 2"):
        reader.restore(_initial_state())
    reader.close()
    reader = Checkpoints(tmp_path, CONFIG)
    chex.assert_trees_all_equal(reader.restore(_initial_state()).params, _initial_state().params)
    reader.close()


def test_a_checkpoint_from_before_epoch_metrics_were_kept_resumes(tmp_path):
    runs.train(CONFIG.replace(epochs=1), str(tmp_path))
    shutil.rmtree(tmp_path / "checkpoints" / "8" / "epoch_so_far")
    resumed = runs.train(CONFIG.replace(resume=True), str(tmp_path))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert resumed["steps"] == 8 and [json.loads(line)["step"] for line in lines] == [8, 16]
