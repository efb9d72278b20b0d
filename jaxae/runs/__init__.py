"""The one runner: `train(config, workdir) -> results`, for every registered model.

keys -> data -> checks -> state -> fit -> evaluate -> pictures -> results.json. Every setting and
every rule between the settings and the data is checked before the workdir is touched, so a
refused run leaves nothing on disk.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import jax

from jaxae import registry
from jaxae.config import Config
from jaxae.data import Dataset, load_dataset
from jaxae.runs.common import RunDir, run_keys
from jaxae.train.checkpoint import Checkpoints
from jaxae.train.loop import fit

__all__ = ["check_run", "fit_options", "prepare_data", "restore", "train"]


def prepare_data(config: Config, data: Dataset | None = None) -> Dataset:
    """The run's data: `data` (default: `config.dataset` loaded) cut to train_size / test_size,
    after checking it against the config and the model (`check_run`)."""
    data = (data or load_dataset(config.dataset)).subset(config.train_size, config.test_size)
    check_run(config, data)
    return data


def check_run(config: Config, data: Dataset) -> None:
    """Raises ValueError for settings the data cannot serve: batch size against the training
    images, labels the model needs, and the model's own rules on the image shape."""
    spec = registry.get(config.model)
    if config.batch_size > len(data.train):
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the {len(data.train)} training images of {data.name}: lower --batch-size"
        )
    if spec.needs_labels(config) and data.classes is None:
        raise ValueError(f"this {config.model} run needs labelled data, and {data.name} has no labels")
    spec.check_data(config, data.info)


def fit_options(config: Config) -> dict:
    """The keyword arguments of `jaxae.train.loop.fit` that come from the config and its model."""
    limit = config.device_data_limit
    return {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "steps_per_dispatch": config.steps_per_dispatch,
        "progress": config.progress,
        "parallel": config.parallel,
        "checkpoint_every": config.checkpoint_every,
        "unroll": registry.get(config.model).unroll(config),
        "device_data_limit": None if limit is None else int(limit * 2**20),
    }


def train(config: Config, workdir: str | Path, data: Dataset | None = None, overwrite: bool = False) -> dict:
    """Trains and evaluates `config.model` on `data` (default: `config.dataset`), writing its
    outputs under `workdir` (see `RunDir`); returns what results.json holds."""
    spec = registry.get(config.model)
    data = prepare_data(config, data)
    keys = run_keys(config)
    steps_per_epoch = len(data.train) // config.batch_size
    with RunDir(workdir, config, {"data_fingerprint": data.fingerprint}, overwrite) as run:
        state = run.start(spec.init(config, data.info, steps_per_epoch, keys["init"]), steps_per_epoch)
        on_epoch = None
        if spec.on_epoch is not None:

            def on_epoch(state, record):
                spec.on_epoch(config, state, record, data.info, keys["pictures"], run.path)

        result = fit(
            state, spec.train_step(config, data.info), data.train, key=keys["train"], **run.fit_hooks(on_epoch), **fit_options(config)
        )
        history = run.history()
        results = spec.evaluate(config, result.state, data, keys["eval"], history)
        _require_finite(results)
        spec.pictures(config, result.state, data, keys["pictures"], run.path, history)
        timings = {
            "steps_per_second": result.steps_per_second,
            "compile_seconds": result.compile_seconds,
            "train_seconds": result.train_seconds,
            "steps": result.steps,
            "data_streamed": result.streamed,
            "train_images": len(data.train),
            "test_images": len(data.test),
        }
        return run.finish({**results, **timings, **data.describe()})


def _require_finite(results: dict) -> None:
    """FloatingPointError naming the results that are NaN or infinite: none is written as a score."""
    bad = [k for k, v in results.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise FloatingPointError(
            f"the evaluation gave non-finite {', '.join(bad)}: nothing was written to results.json; "
            "the checkpoints may hold a diverged state (retrain with a lower learning rate)"
        )


def restore(config: Config, workdir: str | Path, data: Dataset | None = None):
    """The trained state of the run of `config` in `workdir`, from its latest checkpoint (read
    only; refused, in one line, where that checkpoint belongs to another config or data)."""
    spec = registry.get(config.model)
    data = prepare_data(config, data)
    template = spec.init(config, data.info, 1, jax.random.key(0))
    with contextlib.closing(
        Checkpoints(Path(workdir) / "checkpoints", config, {"data_fingerprint": data.fingerprint}, writer=False)
    ) as checkpoints:
        return checkpoints.restore(template)
