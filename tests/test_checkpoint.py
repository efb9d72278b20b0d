"""Checkpoints: bit-exact restores, and one-line refusals of damaged or non-finite checkpoints."""

import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import serialization
from flax.training.train_state import TrainState

from jaxae.config import tiny
from jaxae.train.checkpoint import CheckpointMismatchError, Checkpoints, json_sha256, state_sha256

CONFIG = tiny("ae", code_size=8)
SO_FAR = {"loss": [0.5, 0.25], "mse": [0.125, 0.0625]}


def _incompressible(key, shape) -> jax.Array:
    """float32 with random sign, mantissa and exponent (1..254, so finite): zstd stores such arrays
    raw, so that their bytes appear verbatim in the checkpoint's data file, where a test finds them."""
    bits = jax.random.bits(key, shape, jnp.uint32)
    exponent = 1 + ((bits >> 23) & 0xFF) % 254
    return jax.lax.bitcast_convert_type((bits & ~jnp.uint32(0xFF << 23)) | (exponent << 23), jnp.float32)


def _state(step: int) -> TrainState:
    """An Adam state at `step`: params and both moments hold (256, 64) and (64,) float32 arrays."""
    params = {"dense": {"kernel": jnp.zeros((256, 64)), "bias": jnp.zeros(64)}}
    state = TrainState.create(apply_fn=None, params=params, tx=optax.adam(1e-3))
    leaves, tree = jax.tree.flatten((state.params, state.opt_state))
    keys = jax.random.split(jax.random.key(step), len(leaves))
    leaves = [_incompressible(k, x.shape) if x.dtype == jnp.float32 else x + step for k, x in zip(keys, leaves)]
    params, opt_state = jax.tree.unflatten(tree, leaves)
    return state.replace(step=jnp.asarray(step, jnp.int32), params=params, opt_state=opt_state)


def _host(state) -> dict:
    return jax.device_get(serialization.to_state_dict(state))


def _save(directory, steps=(1, 2)) -> None:
    checkpoints = Checkpoints(directory, CONFIG)
    for step in steps:
        checkpoints.save(_state(step), epoch_so_far=SO_FAR if step == steps[-1] else None)
    checkpoints.close()


def _save_without_digest(directory, state) -> None:
    """Saves `state` as checkpoints were saved before they held a digest."""
    checkpoints = Checkpoints(directory, CONFIG)
    checkpoints.manager.save(
        int(state.step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_host(state)),
            config=ocp.args.JsonSave(CONFIG.to_dict()),
            epoch_so_far=ocp.args.JsonSave({}),
        ),
    )
    checkpoints.close()


def _restore(directory, config=CONFIG):
    """(state, epoch_so_far) of the latest checkpoint under `directory`."""
    checkpoints = Checkpoints(directory, config, writer=False)
    try:
        return checkpoints.restore(_state(0)), checkpoints.epoch_so_far()
    finally:
        checkpoints.close()


def _refusal(directory, config=CONFIG) -> str:
    with pytest.raises(CheckpointMismatchError) as error:
        _restore(directory, config)
    message = str(error.value)
    assert "\n" not in message, message
    return message


def _where(step_dir, array) -> tuple:
    """(data file, offset) of `array`'s bytes among the OCDBT data files under a step's state/."""
    wanted = np.asarray(array).tobytes()
    for path in step_dir.glob("state/**/d/*"):
        offset = path.read_bytes().find(wanted)
        if offset >= 0:
            return path, offset
    raise AssertionError(f"no data file under {step_dir} holds the array's bytes verbatim")


def _change(path, begin: int, new: bytes) -> None:
    """Overwrites the bytes of `path` from `begin` with `new`, keeping the file's size."""
    content = bytearray(path.read_bytes())
    assert 0 <= begin and begin + len(new) <= len(content), (begin, len(new), len(content))
    content[begin : begin + len(new)] = new
    path.write_bytes(bytes(content))


def _flip_8_bytes_of_a_kernel(step_dir, state) -> None:
    """Inverts every bit of two of a kernel's float32 values: still finite (exponents 1..254)."""
    path, offset = _where(step_dir, state.params["dense"]["kernel"])
    begin = offset + 1000
    _change(path, begin, bytes(b ^ 0xFF for b in path.read_bytes()[begin : begin + 8]))


def _zero_4_kb_of_the_optimizer_state(step_dir, state) -> None:
    """Zeros (finite floats) over 4 KB of Adam's second moment of a kernel."""
    path, offset = _where(step_dir, state.opt_state[0].nu["dense"]["kernel"])
    _change(path, offset + 4096, bytes(4096))


def _overwrite_4_kb_from_a_chunk_header(step_dir, state) -> None:
    """Overwrites 4 KB from the start of the zstd frame that holds a kernel's bytes."""
    path, offset = _where(step_dir, state.params["dense"]["kernel"])
    frame = path.read_bytes().rfind(b"\x28\xb5\x2f\xfd", 0, offset)  # zstd's magic number, little-endian
    _change(path, frame, bytes(range(256)) * 16)


def test_an_undamaged_checkpoint_restores_bit_exactly(tmp_path):
    _save(tmp_path)
    state, so_far = _restore(tmp_path)
    expected = _host(_state(2))
    chex.assert_trees_all_equal(_host(state), expected)
    chex.assert_trees_all_equal_dtypes(_host(state), expected)
    assert so_far == SO_FAR
    digest = json.loads((tmp_path / "2" / "digest" / "metadata").read_text())
    assert digest == {
        "state_sha256": state_sha256(expected),
        "config_sha256": json_sha256(CONFIG.to_dict()),
        "epoch_so_far_sha256": json_sha256(SO_FAR),
    }


def test_a_fresh_template_takes_the_saved_values_in_its_own_dtypes(tmp_path):
    """TrainState.create leaves the step a Python int; the digest is checked on the step as saved."""
    _save(tmp_path)
    fresh = TrainState.create(apply_fn=None, params=_state(0).params, tx=optax.adam(1e-3))
    checkpoints = Checkpoints(tmp_path, CONFIG, writer=False)
    restored = checkpoints.restore(fresh)
    checkpoints.close()
    assert restored.step == 2 and np.asarray(restored.step).dtype == np.asarray(fresh.step).dtype
    chex.assert_trees_all_equal((restored.params, restored.opt_state), (_state(2).params, _state(2).opt_state))


def test_a_state_of_another_shape_is_refused_in_one_line(tmp_path):
    _save(tmp_path)
    state = _state(0)
    other = state.replace(params={"dense": {**state.params["dense"], "kernel": jnp.zeros((256, 32))}})
    checkpoints = Checkpoints(tmp_path, CONFIG, writer=False)
    with pytest.raises(CheckpointMismatchError) as error:
        checkpoints.restore(other)
    checkpoints.close()
    message = str(error.value)
    assert "\n" not in message and "the checkpoint at step 2" in message, message
    assert "holds a state unlike this run's (['params']['dense']['kernel']: checkpoint (256, 64) vs now (256, 32))" in message


def test_the_state_digest_sees_every_byte_dtype_and_shape():
    tree = {"b": np.arange(6, dtype=np.float32), "a": np.zeros((2, 3), np.int32)}
    same = {"a": np.zeros((2, 3), np.int32), "b": np.arange(6, dtype=np.float32)}
    assert state_sha256(tree) == state_sha256(same)
    flipped = {**tree, "b": tree["b"].copy()}
    flipped["b"].view(np.uint8)[5] ^= 1
    for other in (
        flipped,
        {**tree, "a": tree["a"].reshape(3, 2)},
        {**tree, "a": tree["a"].astype(np.uint32)},
        {"a": tree["b"], "b": tree["a"]},
    ):
        assert state_sha256(other) != state_sha256(tree)


@pytest.mark.parametrize("damage", [_flip_8_bytes_of_a_kernel, _zero_4_kb_of_the_optimizer_state])
def test_damaged_array_bytes_are_refused_in_one_line(tmp_path, damage):
    _save(tmp_path)
    damage(tmp_path / "2", _state(2))
    message = _refusal(tmp_path)
    assert "the checkpoint at step 2" in message and "its state differs from the sha256 digest" in message
    assert f"delete {tmp_path / '2'} to resume from step 1" in message

    # Only the digest sees this damage: without it, the damaged arrays restore.
    shutil.copytree(tmp_path / "2", tmp_path / "no-digest" / "2")
    shutil.rmtree(tmp_path / "no-digest" / "2" / "digest")
    state, _ = _restore(tmp_path / "no-digest")
    assert state_sha256(_host(state)) != state_sha256(_host(_state(2)))

    shutil.rmtree(tmp_path / "2")  # as the message says
    state, so_far = _restore(tmp_path)
    chex.assert_trees_all_equal(_host(state), _host(_state(1)))
    assert so_far == {}


# Orbax restores all arrays at once: a chunk failing to decode must not leave reads in flight that
# print 'Event loop is closed' tracebacks under the one-line error.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_chunk_that_no_longer_decompresses_is_refused_in_one_line(tmp_path):
    _save(tmp_path)
    _overwrite_4_kb_from_a_chunk_header(tmp_path / "2", _state(2))
    message = _refusal(tmp_path)
    assert "cannot read the checkpoint at step 2" in message
    assert f"delete {tmp_path / '2'} to resume from step 1" in message


def test_the_digest_covers_the_config_and_the_epoch_so_far(tmp_path):
    _save(tmp_path, steps=(1,))
    config_file = tmp_path / "1" / "config" / "metadata"
    saved = config_file.read_text()
    # `epochs` may change on resumption, so only the digest tells this edit from a real resumption.
    config_file.write_text(json.dumps({**json.loads(saved), "epochs": 7}))
    message = _refusal(tmp_path)
    assert "the checkpoint at step 1" in message and "its config differs from the sha256 digest" in message
    assert "no earlier checkpoint is left" in message

    config_file.write_text(saved)
    so_far_file = tmp_path / "1" / "epoch_so_far" / "metadata"
    so_far_file.write_text(json.dumps({**SO_FAR, "loss": [0.5, 0.3]}))
    message = _refusal(tmp_path)
    assert "its epoch_so_far differs from the sha256 digest" in message


def test_a_checkpoint_saved_without_a_digest_restores(tmp_path):
    _save_without_digest(tmp_path, _state(3))
    assert not (tmp_path / "3" / "digest").exists()
    state, so_far = _restore(tmp_path)
    chex.assert_trees_all_equal(_host(state), _host(_state(3)))
    assert so_far == {}


def test_a_restored_state_with_nan_is_refused_in_one_line(tmp_path):
    state = _state(1)
    state = state.replace(params={**state.params, "dense": {**state.params["dense"], "bias": jnp.full(64, jnp.nan)}})
    _save_without_digest(tmp_path, state)
    message = _refusal(tmp_path)
    assert "the checkpoint at step 1" in message and "its state holds NaN or Inf" in message


def test_save_refuses_a_non_finite_state(tmp_path):
    state = _state(1)
    checkpoints = Checkpoints(tmp_path, CONFIG)
    with pytest.raises(FloatingPointError, match="state at step 1 holds NaN or Inf: not saved"):
        checkpoints.save(state.replace(params=jax.tree.map(lambda p: p * jnp.inf, state.params)))
    assert checkpoints.latest_step() is None
    checkpoints.close()
