"""Nonsense settings, busy folders and relabelled results are refused in one line, before anything
is written."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys

import pytest
from cli_calls import assert_one_line, cli_result

from jaxae import cli, recipes, runs
from jaxae.config import make_config, tiny
from jaxae.runs.lock import LOCK_NAME, FolderLock

SMALL_ARGS = ["--batch-size", "32", "--train-size", "256", "--test-size", "64", "--steps-per-dispatch", "4", "--no-progress"]
TINY_ARGS = ["--model", "ae", "--arch", "mlp", "--code-size", "8", *SMALL_ARGS]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--learning-rate", "-0.01"], "learning_rate must lie in (0, inf), got -0.01"),
        (["--train-size", "-100"], "train_size must lie in [1, inf), got -100"),
        (["--test-size", "-1"], "test_size must lie in [1, inf), got -1"),
        (["--test-size", "0"], "test_size must lie in [1, inf), got 0"),
        (["--model", "vae", "--beta", "-1"], "beta must lie in [0, inf), got -1.0"),
        (["--model", "vae", "--nll-samples", "-5"], "nll_samples must lie in [0, inf), got -5"),
        (["--model", "vae", "--objective", "elbo_k", "--gradient", "dreg"], "dreg is the iwae objective's gradient"),
        (["--model", "dae", "--noise", "gaussian:inf"], "noise level inf is out of range for gaussian"),
        (["--model", "dae", "--noise", "mask:1.5"], "noise level 1.5 is out of range for mask"),
        (["--seed", "4294967296"], "seed must lie in [0, 4294967295]"),
        (["--seed", str(2**63)], "seed must lie in [0, 4294967295]"),
        (["--model", "sr", "--factor", "7"], "invalid choice: 7"),
        (["--model", "sr", "--factor", "28"], "invalid choice: 28"),
        (["--batch-size", "300"], "batch_size 300 is larger than train_size 256"),
        (["--micro-batches", "3"], "batch_size 32 does not split into 3 micro-batches"),
        (["--model", "gan", "--ema-decay", "1"], "ema_decay must lie in [0, 1), got 1.0"),
        (["--epochs", "0"], "epochs must lie in [1, inf), got 0"),
        (["--model", "nonsense"], "unknown model 'nonsense'"),
        (["--model", "ae", "--latent", "3"], "unrecognized arguments: --latent 3"),
        (["--model", "ae", "--code-size", "0"], "code_size must lie in [1, inf), got 0"),
        (["--dataset", "no/such/file.npz"], "no such file or folder: no/such/file.npz"),
        (["--recipe", "nonsense"], "no recipe 'nonsense'"),
    ],
)
def test_a_nonsense_setting_is_one_line_and_writes_nothing(tmp_path, args, message):
    workdir = tmp_path / "run"
    code, err = cli_result(["train", *SMALL_ARGS, *args, "--workdir", str(workdir)])
    assert_one_line(code, err, message)
    assert not workdir.exists()


@pytest.mark.parametrize("name", recipes.names())
def test_every_recipe_is_a_config_that_passes_the_checks(name):
    values = recipes.load(name)
    config = recipes.config(name)
    assert config.model == values["model"]
    assert all(getattr(config, k, None) == v or getattr(config.options, k) == v for k, v in values.items() if k != "model"), name


@pytest.mark.parametrize(
    "values,message",
    [
        (dict(binarize="false"), "binarize must be true or false or None, got 'false'"),
        (dict(epochs="3"), "epochs must be an int, got '3'"),
        (dict(epochs=2.0), "epochs must be an int, got 2.0"),
        (dict(latent=True), "latent must be an int, got True"),
        (dict(learning_rate=float("nan")), "learning_rate must lie in (0, inf), got nan"),
        (dict(code_size=4), "vae has no setting code_size"),
    ],
)
def test_python_configs_check_types_and_names(values, message):
    with pytest.raises(ValueError) as error:
        make_config("vae", **values)
    assert message in str(error.value)


def test_noise_is_checked_when_the_config_is_made():
    with pytest.raises(ValueError, match="noise must be a string, got 0.3"):
        make_config("dae", noise=0.3)
    assert make_config("dae", noise="mask:0.5").options.noise == "mask:0.5"


def test_the_image_shape_rules_are_checked_before_the_folder_is_made(tmp_path, synthetic):
    odd = synthetic((30, 30, 1))
    for model in ("sr", "gan"):
        with pytest.raises(ValueError, match="H and W multiples of 4, got 30x30"):
            runs.train(tiny(model, dataset="odd"), tmp_path / model, data=odd)
        assert not (tmp_path / model).exists()
    unlabelled = synthetic((16, 16, 1), labels=False)
    with pytest.raises(ValueError, match="needs labelled data"):
        runs.train(tiny("classifier"), tmp_path / "classifier", data=unlabelled)
    assert not (tmp_path / "classifier").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch tiny ae run's workdir."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", *TINY_ARGS, "--epochs", "2", "--workdir", str(workdir)]) == 0
    return workdir


def _files(folder) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def _copy(finished, tmp_path):
    workdir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished), str(workdir)], check=True)
    return workdir


def test_resuming_with_fewer_epochs_than_trained_is_refused(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    before = _files(workdir)
    code, err = cli_result(["train", *TINY_ARGS, "--epochs", "1", "--resume", "--workdir", str(workdir)])
    assert_one_line(code, err, "has trained 16 steps (2 epochs) already: --resume needs --epochs of at least 2")
    assert _files(workdir) == before


def test_results_without_checkpoints_are_kept_unless_overwrite(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    subprocess.run(["rm", "-r", str(workdir / "checkpoints")], check=True)
    (workdir / "checkpoints").mkdir()
    before = _files(workdir)
    code, err = cli_result(["train", *TINY_ARGS, "--epochs", "1", "--workdir", str(workdir)])
    assert_one_line(code, err, "already holds a run (metrics.jsonl, results.json): choose another --workdir, or add --overwrite")
    assert _files(workdir) == before
    assert cli_result(["train", *TINY_ARGS, "--epochs", "1", "--overwrite", "--workdir", str(workdir)])[0] == 0
    assert json.loads((workdir / "results.json").read_text())["config"]["epochs"] == 1
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_second_run_on_a_folder_is_refused_naming_the_first(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = FolderLock(workdir, "run")
    try:
        for extra in ([], ["--resume"]):
            code, err = cli_result(["train", *TINY_ARGS, *extra, "--workdir", str(workdir)])
            assert_one_line(code, err, f"is in use by another jaxae run (PID {os.getpid()})")
        assert sorted(p.name for p in workdir.iterdir()) == [LOCK_NAME]
    finally:
        holder.release()


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import time
from pathlib import Path
from jaxae.runs.lock import FolderLock
Path({str(workdir)!r}).mkdir()
lock = FolderLock({str(workdir)!r}, "run")
print("locked", flush=True)
time.sleep(60)
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(OSError, match=f"PID {holder.pid}"):
        FolderLock(workdir, "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    FolderLock(workdir, "run").release()


def test_two_runs_started_together_one_wins_and_nothing_is_lost(tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "jaxae.cli", "train", *TINY_ARGS, "--epochs", "2", "--workdir", str(workdir)]
    processes = [
        subprocess.Popen([*command, "--seed", str(seed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in (0, 1)
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], errors
    loser = errors[[p.returncode for p in processes].index(2)]
    assert ("is in use by another jaxae run" in loser or "already holds a run" in loser) and loser.count("\n") == 1, loser
    winner_seed = [p.returncode for p in processes].index(0)
    assert json.loads((workdir / "results.json").read_text())["config"]["seed"] == winner_seed


def test_report_out_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("kept")
    assert_one_line(*cli_result(["report", "--budget", "quick", "--out", str(blocker)]), "is a file: choose a folder")
    assert blocker.read_text() == "kept"


def test_data_prepare_into_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("kept")
    assert_one_line(*cli_result(["data", "prepare", "mnist", "--data-dir", str(blocker)]), "is a file: choose a folder")
    assert blocker.read_text() == "kept"


def test_help_describes_the_tool_for_its_user():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["--help"])
    text = out.getvalue()
    assert "train autoencoders, VAEs and GANs" in text and "jaxae report --budget quick" in text


def test_train_help_shows_every_option_with_its_default_grouped_by_model():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(out.getvalue().split())
    rate = text[text.index("--learning-rate LEARNING_RATE Adam") : text.index("--adam-b1 ADAM_B1 Adam")]
    assert "(default: 0.001;" in rate and "gan: 0.0012" in rate and "vae" in rate and "0.003" in rate, rate
    assert "[may change on --resume]" in text
    for model in ("ae", "dae", "sr", "vae", "gan", "classifier"):
        assert f" {model} options (" in text, model
    assert "--noise NOISE" in text and "default: gaussian:0.2" in text
    assert "--ema-decay EMA_DECAY" in text and "default: 0.999" in text


def test_the_folder_is_free_again_after_a_run(tmp_path):
    runs.train(tiny("ae", arch="mlp", code_size=8), tmp_path / "run")
    FolderLock(tmp_path / "run", "run").release()
