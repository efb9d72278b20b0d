"""Pieces every run shares: the optimizer, keys, baseline scoring, the environment, and the run's
folder (`RunDir`)."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxae import metrics, outputs
from jaxae.config import Config
from jaxae.objectives import to_float
from jaxae.runs.lock import FolderBusyError, FolderLock
from jaxae.train.checkpoint import Checkpoints
from jaxae.train.evaluate import evaluate_tree


def optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam at `config.learning_rate` (constant or cosine-decayed to 0 over the whole run) with
    first-moment decay `config.adam_b1`."""
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {config.batch_size} is larger than the training set: lower --batch-size or raise --train-size")
    rate = config.learning_rate
    if config.schedule == "cosine":
        rate = optax.cosine_decay_schedule(rate, config.epochs * steps_per_epoch)
    return optax.adam(rate, b1=config.adam_b1)


def run_keys(config: Config) -> dict[str, jax.Array]:
    """Independent keys for initialisation, training, evaluation and pictures, from the seed."""
    names = ("init", "train", "eval", "pictures")
    return dict(zip(names, jax.random.split(jax.random.key(config.seed), len(names))))


def restoration_metrics(restorers: dict, corrupt, data, key: jax.Array, ssim: bool = True) -> dict[str, dict[str, float]]:
    """Test MSE, PSNR (dB) and (with `ssim`) SSIM of each named `restore(corrupt(key, clean))`
    against the clean uint8 images of `data` (a Split or {"image": ...}): {name: {"mse", "psnr",
    "ssim"}}, per image then averaged, data range 1.

    One compiled pass scores every restorer on the same corrupted images; with the same `key` as
    `evaluate`, they are exactly the images the model was scored on.
    """

    def eval_step(params, batch, key):
        clean = to_float(batch["image"])
        corrupted = corrupt(key, clean)
        scores = {}
        for name, restore in restorers.items():
            out = restore(corrupted)
            scores[name] = {"mse": jnp.mean(metrics.mse(out, clean)), "psnr": jnp.mean(metrics.psnr(out, clean))}
            if ssim:
                scores[name]["ssim"] = jnp.mean(metrics.ssim(out, clean))
        return scores

    return jax.tree.map(float, evaluate_tree(eval_step, None, data, key))


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


OUTPUTS = ("metrics.jsonl", "results.json")  # besides checkpoints/ and the pictures (*.png)


class RunDir:
    """A run's folder: metrics.jsonl (one line per log point), checkpoints/, results.json, PNGs.

    The folder is locked for the run (`FolderLock`): a second run on it is refused, naming the
    first one's PID. A fresh run refuses a folder that already holds a run (checkpoints, metrics
    or results; nothing written is lost) unless `overwrite`, which deletes that run first; with
    `config.resume` it continues from the latest checkpoint. A checkpoint is saved at every log
    point, after its metrics line, and every `config.checkpoint_every` steps within epochs;
    results.json is replaced atomically at the end, so a failed run leaves the previous results
    untouched. A process killed at any moment leaves a run that resumes: the metrics lines after
    the latest checkpoint (a half-written one included) are dropped then.

    In a multi-process run (jax.distributed) process 0 writes the folder and its checkpoints;
    process i writes its own copies of the outputs to `path/process-i/` and resumes from process
    0's checkpoints. `facts` (the data's description) are checked on resume like the config.
    """

    def __init__(self, path: str | Path, config: Config, facts: dict | None = None, overwrite: bool = False):
        root = Path(path)
        writer = jax.process_index() == 0
        self.path = root if writer else root / f"process-{jax.process_index()}"
        self.config = config
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"the workdir {root} is a file: choose a folder for --workdir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock = FolderLock(self.path, "run")
        except FolderBusyError:
            raise
        except OSError as err:
            raise OSError(f"cannot write to the workdir {self.path} ({err.strerror}): choose another --workdir") from None
        try:
            self._refuse_or_clear(root / "checkpoints", overwrite)
            self.checkpoints = Checkpoints(root / "checkpoints", config, facts, writer=writer)
        except BaseException:
            self.lock.release()
            raise
        self.metrics_path = self.path / "metrics.jsonl"

    def _refuse_or_clear(self, checkpoints: Path, overwrite: bool) -> None:
        """A fresh run: refuses a folder holding another run unless `overwrite`, then deletes it."""
        if self.config.resume:
            return
        held = [name for name in OUTPUTS if (self.path / name).exists()]
        if checkpoints.is_dir() and any(checkpoints.iterdir()):
            held.insert(0, "checkpoints")
        if not held:
            return
        if not overwrite:
            hint = "add --resume to continue it, " if "checkpoints" in held else ""
            raise FileExistsError(
                f"{self.path} already holds a run ({', '.join(held)}): {hint}choose another --workdir, or add --overwrite to delete it"
            )
        shutil.rmtree(checkpoints, ignore_errors=True)
        for file in [*(self.path / name for name in OUTPUTS), *self.path.glob("*.png")]:
            file.unlink(missing_ok=True)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc_info) -> None:
        """Closes the checkpoints and releases the folder however the run ended (a refusal, NaN,
        an interrupt), so no orbax background thread outlives it."""
        self.checkpoints.close()
        self.lock.release()

    def start(self, state, steps_per_epoch: int):
        """The state to train from: `state` itself, or with `config.resume` the latest checkpoint
        (refused where that run has trained past `config.epochs` already)."""
        self.epoch_so_far = {}
        if not self.config.resume:
            self.metrics_path.write_text("")
            return state
        state = self.checkpoints.restore(state)
        done = int(state.step)
        if done > self.config.epochs * steps_per_epoch:
            raise ValueError(
                f"the run in {self.path} has trained {done} steps ({done / steps_per_epoch:g} epochs) already: "
                f"--resume needs --epochs of at least {-(-done // steps_per_epoch)}"
            )
        self.epoch_so_far = self.checkpoints.epoch_so_far()
        kept = [line for line, record in self._metrics() if record["step"] <= done]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))
        return state

    def _metrics(self) -> list[tuple[str, dict]]:
        """(line, record) for each complete line of metrics.jsonl; a line cut off by a kill is skipped."""
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        return [(line, json.loads(line)) for line in lines if _is_json(line)]

    def log(self, state, record: dict) -> None:
        """`fit`'s on_log callback: one JSON line, then a checkpoint of `state`."""
        outputs.append_jsonl(self.metrics_path, record)
        self.checkpoints.save(state)

    def fit_hooks(self, on_epoch: Callable | None = None) -> dict:
        """`fit`'s keyword arguments that write this folder: `on_log` (log, then
        `on_epoch(state, record)`), checkpoints within epochs, the resumed epoch's metrics so far."""

        def on_log(state, record):
            self.log(state, record)
            if on_epoch is not None:
                on_epoch(state, record)

        return {"on_log": on_log, "on_checkpoint": self.checkpoints.save, "epoch_so_far": self.epoch_so_far}

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
