"""One entry point per model: `train(config, workdir) -> results` (also written to workdir/results.json)."""
from __future__ import annotations

import importlib

from jaxae.config import Config
from jaxae.runs.common import RunDir

RUNNERS = {
    "ae": "jaxae.runs.autoencoder",
    "dae": "jaxae.runs.autoencoder",
    "sr": "jaxae.runs.superres",
    "vae": "jaxae.runs.vae",
    "gan": "jaxae.runs.gan",
}


def train(config: Config, workdir: str) -> dict:
    """Trains and evaluates `config.model`, writing its outputs under `workdir`."""
    with RunDir(workdir, config) as run:
        return importlib.import_module(RUNNERS[config.model]).train_and_evaluate(config, run)
