"""Checkpoints of a run's training state with Orbax: save at log points, keep the last few, resume.

A checkpoint (one step folder) holds the state's arrays (step, params, optimizer state), the run's
config as JSON, for one taken within an epoch that epoch's per-step metrics so far (JSON), and a
digest (JSON): the sha256 of the state's arrays and of the two JSON items, as saved. Saves are
synchronous and Orbax finalises each step folder by an atomic rename, so a process killed at any
moment leaves the previous checkpoints loadable; the half-written folder it may leave is removed
when the checkpoints are next opened. The state is saved and restored as host numpy arrays, so
that in a multi-process run one process (the writer) saves for all, and each process restores on
its own.

A restore refuses a damaged checkpoint in one line that names its step folder and the step a
resume would start from once that folder is deleted. Two checks cover two kinds of damage: every
key of the state's OCDBT store is read and every array decoded first (a missing or cut-short file,
a b-tree node failing its CRC-32C, a chunk that no longer decompresses), then the items, restored
as saved, must match the digest (the stored array bytes carry no checksum of their own, so a
flipped bit that still decompresses is found only this way). A restored state must also be
finite, since a state with NaN or Inf is never saved. Checkpoints written before the digest
existed have no digest item: they still restore, with the other checks only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from flax import serialization

from jaxae.config import Config, config_differences, with_defaults

# The items of a step folder; "digest" holds {"<item>_sha256": hex} for the other three.
ITEMS = ("state", "config", "epoch_so_far", "digest")


def all_finite(tree) -> bool:
    """Whether every float array of `tree` (fetched to the host) is free of NaN and Inf."""
    leaves = jax.device_get(jax.tree.leaves(tree))
    return all(np.isfinite(x).all() for x in leaves if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _leaves_by_path(tree) -> dict[str, np.ndarray]:
    """{key path (as jax.tree_util.keystr writes it): leaf as a numpy array} of a host tree."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def state_sha256(tree) -> str:
    """The sha256 (hex) of a state's leaves, fetched to the host: for each leaf, in the order of the
    sorted key paths, its key path, dtype, shape and C-order bytes. Equal for a state and its
    exact restoration, whatever order the leaves come in."""
    digest = hashlib.sha256()
    for path, leaf in sorted(_leaves_by_path(jax.device_get(tree)).items(), key=lambda item: item[0]):
        digest.update(f"{path}\0{leaf.dtype}\0{leaf.shape}\0{leaf.nbytes}\n".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def json_sha256(obj) -> str:
    """The sha256 (hex) of `obj` as canonical JSON (sorted keys, no spaces): equal for an object and
    its JSON round trip (tuples read back as lists)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_every_value(state_dir: Path) -> None:
    """Reads every key of a saved state's OCDBT store (`state_dir`), then decodes every array
    stored there (zarr v2, zstd-compressed chunks, as Orbax writes them), one blocking read at a
    time, and raises on the first that fails: no manifest, a data file missing or cut short, a
    b-tree node that fails its CRC-32C, a chunk that no longer decompresses. (Chunks stored
    uncompressed carry no checksum: the digest checks those bytes.)

    Orbax reads all arrays at once and, when one read fails, closes its event loop with the others
    still in flight; TensorStore completes those onto the closed loop, which prints 'Event loop is
    closed' tracebacks under the one-line error. Checked first, one read at a time, a damaged
    checkpoint fails here with nothing left in flight."""
    base = {"driver": "ocdbt", "base": state_dir.absolute().as_uri() + "/"}
    store = ts.KvStore.open(base).result()
    keys = store.list().result()
    if not keys:
        raise FileNotFoundError(f"no saved arrays in {state_dir} (its manifest.ocdbt is missing or empty)")
    for key in keys:
        store.read(key).result()
    for key in keys:
        if key.endswith(b"/.zarray"):
            array_path = key.decode().removesuffix(".zarray")
            ts.open({"driver": "zarr", "kvstore": {**base, "path": array_path}}).result().read().result()


class CheckpointMismatchError(ValueError):
    """The checkpoint in a workdir belongs to another model or config, cannot be read, or is damaged."""


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
        self.record = {**config.to_dict(), **self.facts}  # the config item each step saves
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
        self.manager = ocp.CheckpointManager(directory, options=options, item_names=ITEMS)

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
        epoch_so_far = epoch_so_far or {}
        digest = {
            "state_sha256": state_sha256(leaves),
            "config_sha256": json_sha256(self.record),
            "epoch_so_far_sha256": json_sha256(epoch_so_far),
        }
        self.manager.save(
            int(state.step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves),
                config=ocp.args.JsonSave(self.record),
                epoch_so_far=ocp.args.JsonSave(epoch_so_far),
                digest=ocp.args.JsonSave(digest),
            ),
        )

    def restore(self, template):
        """The latest checkpoint, shaped like `template` (a freshly initialised state), as numpy arrays.

        Raises CheckpointMismatchError (one line) if it is from another config, cannot be read,
        differs from its digest, holds NaN or Inf, or holds arrays unlike the template's."""
        step = self.manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}: train without --resume first")
        config = self._read(step, config=ocp.args.JsonRestore())["config"]
        self._verify(step, "config", json_sha256(config))
        self._check_config(config)
        saved = self._read(step, state=ocp.args.StandardRestore())["state"]  # as saved, dtypes included
        self._verify(step, "state", state_sha256(saved))
        restored = self._shaped_like(step, saved, jax.device_get(serialization.to_state_dict(template)))
        if not all_finite(restored):
            raise self._damaged_error(step, "its state holds NaN or Inf, which a save never writes")
        return serialization.from_state_dict(template, restored)

    def epoch_so_far(self) -> dict:
        """The per-step metrics of the latest checkpoint's unfinished epoch ({} at an epoch's end,
        and for checkpoints written before they were kept), checked against the digest."""
        step = self.manager.latest_step()
        so_far = {}
        if (self._step_dir(step) / "epoch_so_far").exists():
            so_far = self._read(step, epoch_so_far=ocp.args.JsonRestore())["epoch_so_far"]
        self._verify(step, "epoch_so_far", json_sha256(so_far))
        return so_far

    def _shaped_like(self, step: int, saved, target):
        """The `saved` state dict in the structure and dtypes of `target` (a fresh state's state
        dict); raises CheckpointMismatchError if their key paths or array shapes differ."""
        saved, wanted = _leaves_by_path(saved), _leaves_by_path(target)
        differences = [f"{k} only in the checkpoint" for k in sorted(set(saved) - set(wanted))]
        differences += [f"{k} missing from it" for k in sorted(set(wanted) - set(saved))]
        differences += [
            f"{k}: checkpoint {saved[k].shape} vs now {wanted[k].shape}"
            for k in sorted(set(saved) & set(wanted))
            if saved[k].shape != wanted[k].shape
        ]
        if differences:
            more = f" and {len(differences) - 1} more" if len(differences) > 1 else ""
            raise CheckpointMismatchError(
                f"the checkpoint at step {step} in {self.manager.directory} holds a state unlike this run's "
                f"({differences[0]}{more}); use another --workdir"
            )
        return jax.tree_util.tree_map_with_path(
            lambda path, x: saved[jax.tree_util.keystr(path)].astype(np.asarray(x).dtype, copy=False), target
        )

    def _step_dir(self, step: int) -> Path:
        return Path(self.manager.directory) / str(step)

    def _verify(self, step: int, item: str, sha256: str) -> None:
        """Raises CheckpointMismatchError unless `sha256` is the digest saved for `item` at `step`;
        a step saved without a digest passes."""
        if not (self._step_dir(step) / "digest").exists():
            return
        saved = self._read(step, digest=ocp.args.JsonRestore())["digest"]
        if saved.get(f"{item}_sha256") != sha256:
            raise self._damaged_error(step, f"its {item} differs from the sha256 digest saved with it")

    def _damaged_error(self, step: int, detail: str) -> CheckpointMismatchError:
        return CheckpointMismatchError(
            f"the checkpoint at step {step} in {self.manager.directory} is damaged ({detail}); {self._how_to_go_back(step)}"
        )

    def _how_to_go_back(self, step: int) -> str:
        """What to do about a damaged checkpoint at `step`: delete its folder to resume from the
        step before, when there is one."""
        earlier = [s for s in self.manager.all_steps() if s < step]
        if earlier:
            return f"delete {self._step_dir(step)} to resume from step {max(earlier)}, or use another --workdir"
        return f"no earlier checkpoint is left: delete {self.manager.directory} and train without --resume, or use another --workdir"

    def _read(self, step: int, **items):
        try:
            if "state" in items:
                _read_every_value(self._step_dir(step) / "state")
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as err:  # Orbax and TensorStore raise many kinds; the user needs one line
            raise CheckpointMismatchError(
                f"cannot read the checkpoint at step {step} in {self.manager.directory} "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
                f"{self._how_to_go_back(step)}"
            ) from err

    def _check_config(self, saved_config: dict) -> None:
        differences = config_differences(saved_config, self.config, ignore=self.config.resumable_fields())
        differences += [k for k, v in self.facts.items() if k in saved_config and saved_config[k] != v]
        if differences:
            saved, now = with_defaults(saved_config), self.record
            detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in differences)
            raise CheckpointMismatchError(
                f"the checkpoint in {self.manager.directory} is from another config ({detail}); use another --workdir or the same options"
            )

    def close(self) -> None:
        self.manager.close()
