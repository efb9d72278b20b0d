"""The `jaxae` command end to end with a tiny config, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from jaxae import cli


def test_train_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "jaxae.cli",
        "train",
        "--model",
        "dae",
        "--arch",
        "mlp",
        "--dataset",
        "fashion_mnist",
        "--code-size",
        "4",
        "--noise",
        "gaussian:0.2",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-size",
        "128",
        "--test-size",
        "64",
        "--seed",
        "3",
        "--no-progress",
        "--workdir",
        str(workdir),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((workdir / "results.json").read_text())
    for key in ("test_mse", "test_psnr", "steps_per_second", "compile_seconds", "config"):
        assert key in results
    assert results["config"]["code_size"] == 4 and results["config"]["seed"] == 3
    assert json.loads(done.stdout)["test_mse"] == results["test_mse"]
    assert (workdir / "metrics.jsonl").read_text().count("\n") == 1
    assert (workdir / "samples.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--noise", "blur:0.2", "--model", "dae"], "unknown noise"),
        (["--code-size", "0"], "code_size must lie in [1, inf), got 0"),
        (["--batch-size", "1000", "--train-size", "64"], "larger than"),
        (["--model", "cnn"], "unknown model 'cnn': use one of ae, dae, sr, vae, gan, classifier"),
        (["--dataset", "cifar10"], "unknown dataset 'cifar10': use mnist, fashion_mnist, PATH.npz"),
        (["--parallel", "dp"], "argument --parallel: invalid choice: 'dp'"),
        (["--parallel", "pmap", "--batch-size", "30", "--train-size", "64"], "does not divide over 4 devices"),
        (["--coordinator", "127.0.0.1:1234"], "--coordinator, --num-processes and --process-id go together"),
        (["--model", "gan", "--r1", "-1"], "r1 must lie in [0, inf), got -1.0"),
        (["--model", "gan", "--r1", "5", "--r1-every", "0"], "r1_every must lie in [1, inf), got 0"),
        (["--model", "gan", "--adam-b1", "1"], "adam_b1 must lie in [0, 1), got 1.0"),
        (["--micro-batches", "3"], "batch_size 128 does not split into 3 micro-batches"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    code = cli.main(["train", "--workdir", str(tmp_path), "--no-progress", "--epochs", "1", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and err.count("\n") == 1
