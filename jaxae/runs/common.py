"""Pieces every run shares: data for a config, the optimizer, keys, and the run's folder."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae import data, metrics, outputs
from jaxae.config import Config
from jaxae.objectives import to_float
from jaxae.train.checkpoint import Checkpoints
from jaxae.train.loop import evaluate_tree


def load_split(config: Config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28, 1) and labels (N,) of `split`, cut to train_size/test_size."""
    images, labels = data.load(config.dataset, split)
    n = config.train_size if split == "train" else config.test_size
    return images[:n], labels[:n]


def optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam at `config.learning_rate` (constant or cosine-decayed to 0 over the whole run) with
    first-moment decay `config.adam_b1`."""
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch size {config.batch_size} is larger than the training set: lower --batch-size or raise --train-size"
        )
    rate = config.learning_rate
    if config.schedule == "cosine":
        rate = optax.cosine_decay_schedule(rate, config.epochs * steps_per_epoch)
    return optax.adam(rate, b1=config.adam_b1)


def fit_options(config: Config) -> dict:
    """The keyword arguments of `jaxae.train.loop.fit` that come from the config."""
    return {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "steps_per_dispatch": config.steps_per_dispatch,
        "progress": config.progress,
        "parallel": config.parallel,
        "checkpoint_every": config.checkpoint_every,
        # nn.Conv layers (the GAN's) train much faster unrolled on XLA:CPU; the others use matmuls.
        "unroll": config.model == "gan" and config.arch == "conv",
    }


def timings_and_sizes(result, train_images: int, test_images: int) -> dict:
    """What every results.json records of a `fit` result: steps/s (compilation excluded), compile
    and train seconds, steps run by this invocation, and the image counts."""
    return {
        "steps_per_second": result.steps_per_second,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "train_images": train_images,
        "test_images": test_images,
    }


def run_keys(config: Config) -> dict[str, jax.Array]:
    """Independent keys for initialisation, training, evaluation and pictures, from the seed."""
    names = ("init", "train", "eval", "pictures")
    return dict(zip(names, jax.random.split(jax.random.key(config.seed), len(names))))


def restoration_metrics(restorers: dict, corrupt, images: np.ndarray, key: jax.Array) -> dict[str, dict[str, float]]:
    """Test MSE, PSNR (dB) and SSIM of each named `restore(corrupt(key, clean))` against the clean
    uint8 `images`: {name: {"mse", "psnr", "ssim"}}, per image then averaged, data range 1.

    One compiled pass scores every restorer on the same corrupted images; with the same `key` as
    `evaluate`, they are exactly the images the model was scored on.
    """

    def eval_step(params, batch, key):
        clean = to_float(batch)
        corrupted = corrupt(key, clean)
        scores = {}
        for name, restore in restorers.items():
            out = restore(corrupted)
            scores[name] = {
                "mse": jnp.mean(jnp.square(out - clean)),
                "psnr": jnp.mean(metrics.psnr(out, clean)),
                "ssim": jnp.mean(metrics.ssim(out, clean)),
            }
        return scores

    return jax.tree.map(float, evaluate_tree(eval_step, None, images, key))


def environment() -> dict:
    """Software versions and the device a run used, for every results file."""
    import flax
    import jaxlib
    import optax as optax_module

    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax_module.__version__,
        "python": platform.python_version(),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
    }


class RunDir:
    """A run's folder: metrics.jsonl (one line per log point), checkpoints/, results.json, PNGs.

    A fresh run refuses a folder that already holds checkpoints (nothing written is lost); with
    `config.resume` it continues from the latest one. A checkpoint is saved at every log point,
    after its metrics line, and every `config.checkpoint_every` steps within epochs; results.json
    is replaced atomically at the end, so a failed run leaves the previous results untouched. A
    process killed at any moment leaves a run that resumes: the metrics lines after the latest
    checkpoint (a half-written one included) are dropped then.

    In a multi-process run (jax.distributed) process 0 writes the folder and its checkpoints;
    process i writes its own copies of the outputs to `path/process-i/` and resumes from process
    0's checkpoints.
    """

    def __init__(self, path: str | Path, config: Config):
        root = Path(path)
        writer = jax.process_index() == 0
        self.path = root if writer else root / f"process-{jax.process_index()}"
        self.config = config
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise OSError(f"cannot write to the workdir {self.path} ({err.strerror}): choose another --workdir") from None
        self.metrics_path = self.path / "metrics.jsonl"
        self.checkpoints = Checkpoints(root / "checkpoints", config.to_dict(), writer=writer)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc_info) -> None:
        """Closes the checkpoints however the run ended (a refusal, NaN, an interrupt), so no orbax
        background thread outlives it."""
        self.checkpoints.close()

    def start(self, state):
        """The state to train from: `state` itself, or with `config.resume` the latest checkpoint."""
        self.epoch_so_far = {}
        if self.config.resume:
            state = self.checkpoints.restore(state)
            self.epoch_so_far = self.checkpoints.epoch_so_far()
            kept = [line for line, record in self._metrics() if record["step"] <= int(state.step)]
            self.metrics_path.write_text("".join(line + "\n" for line in kept))
        elif self.checkpoints.latest_step() is not None:
            raise FileExistsError(
                f"{self.path} already holds a run (checkpoint at step {self.checkpoints.latest_step()}): "
                "add --resume to continue it, or choose another --workdir"
            )
        else:
            self.metrics_path.write_text("")
        return state

    def _metrics(self) -> list[tuple[str, dict]]:
        """(line, record) for each complete line of metrics.jsonl; a line cut off by a kill is skipped."""
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        return [(line, json.loads(line)) for line in lines if _is_json(line)]

    def log(self, state, record: dict) -> None:
        """`fit`'s on_log callback: one JSON line, then a checkpoint of `state`."""
        outputs.append_jsonl(self.metrics_path, record)
        self.checkpoints.save(state)

    def fit_hooks(self, on_log: Callable[[Any, dict], None] | None = None) -> dict:
        """`fit`'s keyword arguments that write this folder: `on_log` (default `log`; it must call
        `log`), checkpoints within epochs, and the resumed epoch's metrics so far."""
        return {"on_log": on_log or self.log, "on_checkpoint": self.checkpoints.save, "epoch_so_far": self.epoch_so_far}

    def history(self) -> list[dict]:
        """Every metrics record of the run so far, resumed parts included."""
        return [record for _, record in self._metrics()]

    def finish(self, results: dict) -> dict:
        """Writes results.json with the config and environment; returns what was written."""
        self.checkpoints.close()
        full = {**results, "config": self.config.to_dict(), "environment": environment()}
        outputs.write_json(self.path / "results.json", full)
        return full


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
