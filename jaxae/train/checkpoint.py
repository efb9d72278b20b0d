"""Checkpoints of a run's training state with Orbax: save at log points, keep the last few, resume.

A checkpoint holds the state's arrays (step, params, optimizer state) and the run's config as
JSON. Saves are synchronous and Orbax finalises each step folder by an atomic rename, so a process
killed at any moment leaves the previous checkpoints loadable.
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

# Config fields that may change between a run and its resumption; any other difference is an error.
RESUMABLE_CHANGES = ("epochs", "progress", "steps_per_dispatch", "resume", "nll_samples")


class CheckpointMismatchError(ValueError):
    """The checkpoint in a workdir belongs to another model or config."""


class Checkpoints:
    """The checkpoints under `directory` for one run whose config is `config` (a JSON-able dict)."""

    def __init__(self, directory: str | Path, config: dict, max_to_keep: int = 3):
        self.config = config
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options, item_names=("state", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state) -> None:
        """Saves `state` at its step; refuses a state with a NaN or Inf so that good checkpoints stay."""
        leaves = serialization.to_state_dict(state)
        if not all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(leaves))):
            raise FloatingPointError(f"state at step {int(state.step)} holds NaN or Inf: not saved")
        self.manager.save(
            int(state.step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(leaves), config=ocp.args.JsonSave(self.config)),
        )

    def restore(self, template):
        """The latest checkpoint, shaped like `template` (a freshly initialised state)."""
        step = self.manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}: train without --resume first")
        saved_config = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        differences = sorted(
            k for k in set(saved_config) | set(self.config)
            if k not in RESUMABLE_CHANGES and saved_config.get(k) != self.config.get(k)
        )
        if differences:
            detail = ", ".join(f"{k}: checkpoint {saved_config.get(k)!r} vs now {self.config.get(k)!r}" for k in differences)
            raise CheckpointMismatchError(
                f"the checkpoint in {self.manager.directory} is from another config ({detail}); "
                "use another --workdir or the same options"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, serialization.to_state_dict(template))
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return serialization.from_state_dict(template, restored["state"])

    def close(self) -> None:
        self.manager.close()
