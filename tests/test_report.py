"""The report: what each budget plans, its answers read off the tables, and the whole report on a
tiny budget (every section and figure, then reuse with identical numbers)."""

import json

import pytest

from jaxae import cli, report, runs
from jaxae.report import plan
from jaxae.report.answers import answers

TINY = dict(epochs=1, train_size=128, test_size=32, batch_size=32)


@pytest.fixture
def tiny_budget(monkeypatch, quick_features):
    monkeypatch.setitem(
        plan.BUDGETS,
        "tiny",
        plan.Budget(
            "tiny test budget",
            code_sizes=(16, 30),
            factors=(2,),
            autoencoder={**TINY, "arch": "mlp"},
            sr=TINY,
            vae={**TINY, "nll_samples": 4},
            gan={**TINY, "arch": "mlp", "classifier_arch": "mlp"},
        ),
    )


def test_the_quick_plan_keeps_what_the_lesson_asks_and_trains_mlps():
    configs = plan.plan(plan.BUDGETS["quick"])
    required = {
        "ae_mnist_code16",
        "ae_mnist_code30",
        "ae_fashion_mnist_code16",
        "ae_fashion_mnist_code30",
        "sr_mnist_x2",
        "sr_fashion_mnist_x2",
        "vae_mnist",
        "gan_mnist",
        "gan_fashion_mnist",
        *(f"dae_{d}_{n}" for d in plan.DATASETS for n in ("gaussian", "mask", "salt_and_pepper")),
    }
    assert required <= set(configs)
    assert {configs[n].options.arch for n in configs if n.startswith(("ae_", "dae_", "gan_"))} == {"mlp"}
    assert configs["gan_mnist"].options.classifier_arch == configs["gan_fashion_mnist"].options.classifier_arch == "mlp"
    assert configs["vae_mnist"].options.binarize is None and configs["vae_mnist"].dataset == "mnist"
    assert all(not c.progress for c in configs.values())


def test_the_full_plan_trains_the_conv_models_on_every_image():
    configs = plan.plan(plan.BUDGETS["full"])
    assert {n for n in configs if n.startswith("ae_mnist")} == {f"ae_mnist_code{s}" for s in (2, 8, 16, 30, 64)}
    assert {configs[n].options.arch for n in configs if n.startswith(("ae_", "dae_", "gan_"))} == {"conv"}
    assert all(c.train_size is None and c.test_size is None for c in configs.values())
    likelihood = configs["vae_mnist"]
    assert (likelihood.options.hidden, likelihood.options.latent, likelihood.epochs) == (1000, 50, 400)


def _tables(changes=None):
    """Report tables for which every answer holds, with `changes` applied to single numbers."""
    columns = [f"{d}/{n}" for d in plan.DATASETS for n in ("gaussian", "mask", "salt_and_pepper")]
    rows = {f"dae_{c.replace('/', '_')}": [25.0 if other == c else 12.0 for other in columns] for c in columns}
    rows.update({"noisy input": [15.0] * 6, "best gaussian blur": [18.0] * 6})
    results = {f"ae_{d}_code{s}": {"test_mse": 0.01 if d == "mnist" else 0.012} for d in plan.DATASETS for s in (16, 30)}
    results.update({f"sr_{d}_x2": {"test_psnr": 24.0, "bicubic_psnr": 20.0} for d in plan.DATASETS})
    results.update({"vae_mnist": {"test_neg_elbo": 99.0}, **{f"gan_{d}": {"fid": 5.0} for d in plan.DATASETS}})
    pca = {f"{d}_code{s}": {"mse": 0.02} for d in plan.DATASETS for s in (16, 30)}
    fids = {d: 20.0 for d in plan.DATASETS}
    for (table, *path), value in (changes or {}).items():
        target = {"results": results, "rows": rows, "fids": fids}[table]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return results, {"columns": columns, "rows": rows}, pca, fids


def test_every_answer_holds_on_tables_that_answer_yes():
    checked = answers(*_tables())
    assert len(checked) == 8 and all(a["holds"] for a in checked), checked


@pytest.mark.parametrize(
    "change,question",
    [
        ({("rows", "dae_mnist_mask", 1): 16.0}, "each denoiser beats"),
        ({("rows", "dae_fashion_mnist_gaussian", 4): 30.0}, "gaussian-trained Fashion-MNIST denoiser"),
        ({("results", "ae_fashion_mnist_code30", "test_mse"): 0.03}, "beats PCA at 16 and 30"),
        ({("results", "ae_mnist_code16", "test_mse"): 0.013}, "digits have the lower 16-unit error"),
        ({("results", "sr_fashion_mnist_x2", "test_psnr"): 21.0}, "super-resolution x2"),
        ({("results", "vae_mnist", "test_neg_elbo"): 103.0}, "-ELBO of at most 102"),
        ({("fids", "fashion_mnist"): 6.0}, "each GAN's FID"),
    ],
)
def test_an_answer_turns_no_when_its_number_does(change, question):
    checked = answers(*_tables(change))
    (changed,) = [a for a in checked if question in a["question"]]
    assert not changed["holds"], changed
    assert sum(not a["holds"] for a in checked) == 1


def test_report_answers_every_section_and_reuses_its_runs(tiny_budget, tmp_path, monkeypatch):
    out = tmp_path / "report"
    path = report.build("tiny", out, "pytest")
    text = path.read_text()
    for title in ("## The answers", "## 1. Denoising", "## 2. Compression", "## 3. Super-resolution", "## 4. Variational", "## 5. GAN"):
        assert title in text, title
    verdicts = text.split("## The answers")[1].split("## 1.")[0].count(": **")
    assert verdicts == 8 and "MLP autoencoder" in text and "MLP GAN samples" in text
    figures = [line.split("(`")[1].rstrip("`)") for line in text.splitlines() if line.startswith("*") and "(`" in line]
    assert len(figures) >= 10 and all((out / f).exists() for f in figures), figures
    first = json.loads((out / "report.json").read_text())
    assert set(first["transfer"]["rows"]) >= {"dae_mnist_gaussian", "noisy input", "best gaussian blur"}
    assert len(first["transfer"]["columns"]) == 6 and first["vae_fid"]["mnist"] > 0
    assert set(first) >= {"runs", "pca", "transfer", "vae_fid", "answers"} and len(first["answers"]) == 8
    assert set(first["pca"]) == {f"{d}_code{s}" for d in plan.DATASETS for s in (16, 30)}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs, "train", no_training)
    report.build("tiny", out, "pytest")
    again = json.loads((out / "report.json").read_text())
    for key in ("runs", "transfer", "pca", "vae_fid", "answers"):
        assert again[key] == first[key], key


def test_report_refuses_a_folder_with_other_runs(tiny_budget, tmp_path):
    (tmp_path / "report" / "runs" / "ae_mnist_code16").mkdir(parents=True)
    (tmp_path / "report" / "runs" / "ae_mnist_code16" / "results.json").write_text(json.dumps({"config": {"seed": 1}}))
    assert cli.main(["report", "--budget", "quick", "--out", str(tmp_path / "report")]) == 2
