"""Checkpoints of a run's training state with Orbax: save at log points, keep the last few, resume.

A checkpoint holds the state's arrays (step, params, optimizer state), the run's config as JSON
and, for one taken within an epoch, that epoch's per-step metrics so far (JSON). Saves are
synchronous and Orbax finalises each step folder by an atomic rename, so a process killed at any
moment leaves the previous checkpoints loadable; the half-written folder it may leave is removed
when the checkpoints are next opened. The state is saved and restored as host numpy arrays, so
that in a multi-process run one process (the writer) saves for all, and each process restores on
its own.
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from flax import serialization

from jaxae.config import Config, config_differences, with_defaults


def all_finite(tree) -> bool:
    """Whether every float array of `tree` (fetched to the host) is free of NaN and Inf."""
    leaves = jax.device_get(jax.tree.leaves(tree))
    return all(np.isfinite(x).all() for x in leaves if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _read_every_value(state_dir: Path) -> None:
    """Reads every key of a saved state's OCDBT store (`state_dir`), one blocking read at a time,
    and raises on the first that fails: no manifest, a data file missing or cut short, a b-tree
    node that fails its CRC-32C. (The array bytes themselves carry no checksum.)

    Orbax reads all arrays at once and, when one read fails, closes its event loop with the others
    still in flight; TensorStore then completed those onto the closed loop, which printed
    'Event loop is closed' tracebacks under the one-line error. Checked first, one read at a time,
    a damaged checkpoint fails here with nothing left in flight."""
    store = ts.KvStore.open({"driver": "ocdbt", "base": state_dir.absolute().as_uri() + "/"}).result()
    keys = store.list().result()
    if not keys:
        raise FileNotFoundError(f"no saved arrays in {state_dir} (its manifest.ocdbt is missing or empty)")
    for key in keys:
        store.read(key).result()


class CheckpointMismatchError(ValueError):
    """The checkpoint in a workdir belongs to another model or config, or cannot be read."""


class Checkpoints:
    """The checkpoints under `directory` for one run of `config`; `facts` (JSON-able, such as the
    data's fingerprint) are saved beside the config and must match on restore, as the config's
    fields must, except those `--resume` may change (`Config.resumable_fields`).

    Only a `writer` saves; every process of a run may restore. Each process works on its own
    (no cross-process barriers), since the arrays saved are host copies of a replicated state.
    """

    def __init__(self, directory: str | Path, config: Config, facts: dict | None = None, max_to_keep: int = 3, writer: bool = True):
        self.config = config
        self.facts = facts or {}
        self.writer = writer
        directory = Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        process = jax.process_index()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,
            create=False,
            read_only=not writer,
            cleanup_tmp_directories=writer,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=process, active_processes={process}, barrier_sync_key_prefix=f"process{process}"
            ),
        )
        self.manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "config", "epoch_so_far"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state, epoch_so_far: dict | None = None) -> None:
        """Saves `state` at its step, with `epoch_so_far` ({metric: [per-step floats]}, within an
        epoch); refuses a state with a NaN or Inf so that good checkpoints stay."""
        if not self.writer:
            return
        leaves = jax.device_get(serialization.to_state_dict(state))
        if not all_finite(leaves):
            raise FloatingPointError(f"state at step {int(state.step)} holds NaN or Inf: not saved")
        self.manager.save(
            int(state.step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves),
                config=ocp.args.JsonSave({**self.config.to_dict(), **self.facts}),
                epoch_so_far=ocp.args.JsonSave(epoch_so_far or {}),
            ),
        )

    def restore(self, template):
        """The latest checkpoint, shaped like `template` (a freshly initialised state), as numpy arrays."""
        step = self.manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}: train without --resume first")
        self._check_config(self._read(step, config=ocp.args.JsonRestore())["config"])
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, jax.device_get(serialization.to_state_dict(template)))
        restored = self._read(step, state=ocp.args.StandardRestore(abstract))["state"]
        return serialization.from_state_dict(template, restored)

    def epoch_so_far(self) -> dict:
        """The per-step metrics of the latest checkpoint's unfinished epoch ({} at an epoch's end,
        and for checkpoints written before they were kept)."""
        step = self.manager.latest_step()
        if not (Path(self.manager.directory) / str(step) / "epoch_so_far").exists():
            return {}
        return self._read(step, epoch_so_far=ocp.args.JsonRestore())["epoch_so_far"]

    def _read(self, step: int, **items):
        try:
            if "state" in items:
                _read_every_value(Path(self.manager.directory) / str(step) / "state")
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as err:  # Orbax and TensorStore raise many kinds; the user needs one line
            raise CheckpointMismatchError(
                f"cannot read the checkpoint at step {step} in {self.manager.directory} "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
                "delete that step's folder to resume from the one before, or use another --workdir"
            ) from err

    def _check_config(self, saved_config: dict) -> None:
        differences = config_differences(saved_config, self.config, ignore=self.config.resumable_fields())
        differences += [k for k, v in self.facts.items() if k in saved_config and saved_config[k] != v]
        if differences:
            saved, now = with_defaults(saved_config), {**self.config.to_dict(), **self.facts}
            detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in differences)
            raise CheckpointMismatchError(
                f"the checkpoint in {self.manager.directory} is from another config ({detail}); "
                "use another --workdir or the same options"
            )

    def close(self) -> None:
        self.manager.close()
