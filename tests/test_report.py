"""The report on a tiny budget: all five sections and their figures, then reuse with identical numbers."""
import functools
import json

import pytest

from jaxae import cli, features, report, runs
from jaxae.report import plan

TINY = dict(epochs=1, train_size=256, test_size=64, batch_size=32)


@pytest.fixture
def tiny_budget(monkeypatch, tmp_path):
    monkeypatch.setitem(
        plan.BUDGETS,
        "tiny",
        plan.Budget("tiny test budget", autoencoder=TINY, sr=TINY, vae={**TINY, "nll_samples": 4}, gan={**TINY, "arch": "mlp"}),
    )
    monkeypatch.setattr(plan, "CODE_SIZES", (2, 16))
    monkeypatch.setattr(plan, "FACTORS", (2,))
    monkeypatch.setenv("JAXAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "network", functools.partial(features.network, epochs=1, train_size=512))


def test_report_answers_every_section_and_reuses_its_runs(tiny_budget, tmp_path, monkeypatch):
    out = tmp_path / "report"
    path = report.build("tiny", out, "pytest")
    text = path.read_text()
    for title in ("## 1. Denoising", "## 2. Compression", "## 3. Super-resolution", "## 4. Variational", "## 5. GAN"):
        assert title in text, title
    figures = [line.split("(`")[1].rstrip("`)") for line in text.splitlines() if line.startswith("*") and "(`" in line]
    assert len(figures) >= 5 and all((out / f).exists() for f in figures if "x4" not in f), figures
    first = json.loads((out / "report.json").read_text())
    assert set(first["transfer"]["rows"]) >= {"dae_mnist_gaussian", "noisy input", "best gaussian blur"}
    assert len(first["transfer"]["columns"]) == 6 and first["vae_fid"]["mnist"] > 0

    def no_training(*args):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs, "train", no_training)
    report.build("tiny", out, "pytest")
    again = json.loads((out / "report.json").read_text())
    for key in ("runs", "transfer", "pca", "vae_fid"):
        assert again[key] == first[key], key


def test_report_refuses_a_folder_with_other_runs(tiny_budget, tmp_path):
    (tmp_path / "report" / "runs" / "ae_mnist_code2").mkdir(parents=True)
    (tmp_path / "report" / "runs" / "ae_mnist_code2" / "results.json").write_text(json.dumps({"config": {"seed": 1}}))
    assert cli.main(["report", "--budget", "quick", "--out", str(tmp_path / "report")]) == 2
