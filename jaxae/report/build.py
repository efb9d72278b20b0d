"""The main job: train what the autoencoder lesson asks about and answer it in DIR/report.md.

    jaxae report --budget quick --out runs/report

Each model trains as a run of its own in DIR/runs/NAME/ (results.json, metrics.jsonl, PNGs,
checkpoints), exactly as `jaxae train` would. A run whose results.json holds the same config is
reused; one with checkpoints but no results is resumed. What the report adds (the denoising
transfer matrix, PCA, the FID of VAE samples) is computed from those runs with fixed keys, so
running the command again on the same DIR gives identical numbers.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxae import baselines, features, runs
from jaxae.config import Config, config_differences
from jaxae.noise import Noise
from jaxae.objectives import to_float
from jaxae.outputs import write_json
from jaxae.report.answers import answers
from jaxae.report.markdown import render
from jaxae.report.plan import BUDGETS, DATASETS, NOISES, noise_kind, plan
from jaxae.runs.common import environment, restoration_metrics
from jaxae.runs.lock import FolderLock
from jaxae.specs import autoencoder as ae_spec
from jaxae.specs import vae as vae_spec


def ensure_run(config: Config, workdir: Path) -> dict:
    """results.json of the run in `workdir`: reused if its config matches, else trained (resumed
    from its checkpoints if an earlier attempt was interrupted, restarted if it had none)."""
    done = workdir / "results.json"
    if done.exists():
        results = json.loads(done.read_text())
        if not config_differences(results["config"], config, ignore=("resume",)):
            return results
        raise ValueError(f"{workdir} holds a run with another config: remove it or choose another --out")
    checkpoints = workdir / "checkpoints"
    resume = checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())
    return runs.train(config.replace(resume=resume), workdir, overwrite=not resume)


def denoising_transfer(configs: dict[str, Config], out: Path) -> dict:
    """Test PSNR (dB) of every denoiser on every (dataset, noise), with the noisy input and the
    best gaussian blur on the same corrupted images (one fixed key, one compiled pass per column)."""
    denoisers = [f"dae_{d}_{noise_kind(n)}" for d in DATASETS for n in NOISES]
    restorers = {}
    for name in denoisers:
        state = runs.restore(configs[name], out / "runs" / name)
        restorers[name] = lambda x, state=state: ae_spec.restore(state, x)
    restorers.update({"noisy input": lambda x: x, **ae_spec.blur_restorers()})
    columns = [(dataset, noise) for dataset in DATASETS for noise in NOISES]
    rows = {name: [] for name in [*denoisers, "noisy input", "best gaussian blur"]}
    for dataset, noise in columns:
        test = runs.prepare_data(configs[f"dae_{dataset}_gaussian"]).test
        scores = restoration_metrics(restorers, Noise.parse(noise), test, jax.random.key(2024), ssim=False)
        scores["best gaussian blur"] = {"psnr": ae_spec.best_blur(scores)["blur_psnr"]}
        for name in rows:
            rows[name].append(scores[name]["psnr"])
    return {"columns": [f"{d}/{noise_kind(n)}" for d, n in columns], "rows": rows}


def pca_baselines(configs: dict[str, Config], code_sizes: tuple[int, ...]) -> dict:
    """Test MSE and PSNR of PCA with each code size, fitted on the runs' training images."""
    scores = {}
    for dataset in DATASETS:
        data = runs.prepare_data(configs[f"ae_{dataset}_code{code_sizes[0]}"])
        train = np.asarray(to_float(data.train.load()["image"]))
        test = np.asarray(to_float(data.test.load()["image"]))
        pca = baselines.PCA(train, max(code_sizes))
        for size in code_sizes:
            error = np.mean(np.square(pca.reconstruct(test, size) - test), axis=(1, 2, 3))
            scores[f"{dataset}_code{size}"] = {"mse": float(np.mean(error)), "psnr": float(np.mean(-10 * np.log10(error)))}
    return scores


def vae_sample_fid(config: Config, workdir: Path, count: int, net: features.FeatureNetwork) -> float:
    """FID of `count` prior samples (Bernoulli or Gaussian means) of the finished VAE run in
    `workdir` against the test split, on the feature network `net` (the GAN's)."""
    data = runs.prepare_data(config)
    state = runs.restore(config, workdir, data)
    samples = jax.jit(vae_spec.sample, static_argnums=(1, 3))(
        state.params, vae_spec.build_model(config, data.info), jax.random.key(7), count
    )
    return net.fid(samples, data.test.load()["image"])


def vae_fid(configs: dict[str, Config], out: Path, gan_results: dict) -> dict:
    """`vae_sample_fid` of each dataset's VAE, with as many samples as the GAN's FID used, on the
    GAN's feature network."""
    fids = {}
    for dataset in DATASETS:
        gan_config = configs[f"gan_{dataset}"]
        net = features.network_for(gan_config, runs.prepare_data(gan_config))
        fids[dataset] = vae_sample_fid(configs[f"vae_{dataset}"], out / "runs" / f"vae_{dataset}", gan_results[dataset]["fid_samples"], net)
    return fids


def build(budget_name: str, out: str | Path, command: str) -> Path:
    """Trains or reuses every run, computes the tables and writes out/report.md (and report.json)."""
    if budget_name not in BUDGETS:
        raise ValueError(f"unknown budget {budget_name!r}: use {' or '.join(BUDGETS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file: choose a folder for the report")
    budget = BUDGETS[budget_name]
    configs = plan(budget)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out, "report")
    try:
        return _build(budget_name, budget, configs, out, command)
    finally:
        lock.release()


def _build(budget_name: str, budget, configs: dict[str, Config], out: Path, command: str) -> Path:
    start = time.perf_counter()
    results = {}
    with tqdm(total=len(configs) + 3, unit="run", desc="report") as bar:
        for name, config in configs.items():
            bar.set_postfix_str(name)
            results[name] = ensure_run(config, out / "runs" / name)
            bar.update()
        bar.set_postfix_str("denoising transfer")
        transfer = denoising_transfer(configs, out)
        bar.update()
        bar.set_postfix_str("PCA")
        pca = pca_baselines(configs, budget.code_sizes)
        bar.update()
        bar.set_postfix_str("VAE FID")
        fids = vae_fid(configs, out, {d: results[f"gan_{d}"] for d in DATASETS})
        bar.update()
    train_seconds = sum(r.get("train_seconds", 0.0) for r in results.values())
    facts = {
        "command": command,
        "budget": budget_name,
        "budget_description": budget.description,
        "date": datetime.date.today().isoformat(),
        "seed": next(iter(configs.values())).seed,
        "environment": environment(),
        "wall_seconds_this_invocation": time.perf_counter() - start,
        "train_seconds_all_runs": train_seconds,
    }
    tables = {"runs": results, "transfer": transfer, "pca": pca, "vae_fid": fids}
    checked = answers(results, transfer, pca, fids)
    write_json(out / "report.json", {**facts, **tables, "answers": checked})
    path = out / "report.md"
    text = render(facts, budget, results, transfer, pca, fids, checked)
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
