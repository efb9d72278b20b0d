"""Data parallelism: jit over 1, 2 or 4 devices and pmap give the numbers of one device."""

import json
import os
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from jaxae import data, runs
from jaxae.config import tiny
from jaxae.data import DataInfo
from jaxae.models.autoencoder import autoencoder
from jaxae.models.gan import gan
from jaxae.noise import Noise
from jaxae.objectives import no_corruption, reconstruction, vae
from jaxae.specs import vae as vae_spec
from jaxae.train.gan import GANSettings, create_gan_state
from jaxae.train.gan import make_train_step as make_gan_step
from jaxae.train.loop import fit
from jaxae.train.parallel import data_mesh, make_multi_step, micro_batch_grad, shard_key, sync_gradients
from jaxae.train.state import create_train_state
from jaxae.train.step import make_train_step

CORRUPTIONS = {"ae": no_corruption, "dae": Noise("gaussian", 0.3)}
MNIST = DataInfo((28, 28, 1), 10, 256, 64)


@pytest.fixture(scope="module")
def digits():
    return data.load("mnist", "train")[0][:256]


def _fit(images, model, devices, parallel):
    net = autoencoder("mlp", 8, (28, 28, 1))
    state = create_train_state(net, optax.adam(1e-3), jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    step = make_train_step(reconstruction(CORRUPTIONS[model]))
    mesh = data_mesh(jax.devices()[:devices])
    return fit(
        state,
        step,
        {"image": images},
        key=jax.random.key(1),
        epochs=2,
        batch_size=32,
        steps_per_dispatch=4,
        progress=False,
        mesh=mesh,
        parallel=parallel,
    )


@pytest.fixture(scope="module")
def single_device(digits):
    return {model: _fit(digits, model, 1, "jit") for model in CORRUPTIONS}


@pytest.mark.parametrize(
    "model,devices,parallel",
    [("ae", 2, "jit"), ("ae", 4, "jit"), ("ae", 1, "pmap"), ("ae", 2, "pmap"), ("ae", 4, "pmap"), ("dae", 4, "jit"), ("dae", 4, "pmap")],
)
def test_agrees_with_one_device(digits, single_device, model, devices, parallel):
    reference = single_device[model]
    result = _fit(digits, model, devices, parallel)
    chex.assert_trees_all_close(result.state.params, reference.state.params, atol=1e-5, rtol=1e-5)
    assert [r["step"] for r in result.history] == [8, 16]
    np.testing.assert_allclose(result.history[-1]["loss"], reference.history[-1]["loss"], rtol=1e-5)
    assert not isinstance(result.state.params["encoder"]["Dense_0"]["kernel"].sharding, jax.sharding.NamedSharding)


def _ae_fit(devices, parallel, micro_batches=1):
    state = create_train_state(autoencoder("mlp", 8, (28, 28, 1)), optax.adam(1e-3), jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    return _fit_state(state, make_train_step(reconstruction(CORRUPTIONS["dae"]), micro_batches), devices, parallel)


def _vae_fit(devices, parallel, micro_batches=1):
    config = tiny("vae")
    state = vae_spec.init(config, MNIST, 8, jax.random.key(0))
    return _fit_state(state, make_train_step(vae(config.options.beta), micro_batches), devices, parallel)


def _gan_fit(devices, parallel, micro_batches=1):
    """With SGD at 0.01 (parameters move by up to 0.02-0.06 in 8 steps): Adam would turn the
    rounding differences of near-zero gradients into steps of its whole learning rate, which the
    adversarial game then spreads (up to 65 of 131072 weights past 1e-4 apart after 8 steps)."""
    config = tiny("gan", arch="mlp")
    settings = GANSettings(config.options.latent, micro_batches=micro_batches)
    state = create_gan_state(*gan("mlp", (28, 28, 1)), optax.sgd(0.01), optax.sgd(0.01), jax.random.key(0), settings, (28, 28, 1))
    return _fit_state(state, make_gan_step(settings), devices, parallel)


def _fit_state(state, step, devices, parallel):
    images = data.load("mnist", "train")[0][:256]
    return fit(
        state,
        step,
        {"image": images},
        key=jax.random.key(1),
        epochs=1,
        batch_size=32,
        steps_per_dispatch=4,
        progress=False,
        mesh=data_mesh(jax.devices()[:devices]),
        parallel=parallel,
    ).state


@pytest.mark.parametrize("fit_model", [_ae_fit, _vae_fit, _gan_fit], ids=["dae", "vae", "gan"])
def test_micro_batches_give_the_same_bits_on_1_2_and_4_devices(fit_model):
    """Eight steps with 4 micro-batches: identical states on 1, 2 and 4 devices of this process, and the plain
    step's state to float tolerance in all but a few parameters: Adam moves a parameter whose
    gradient is near 0 by up to its learning rate whatever the gradient's size, so a rounding
    difference there can show (the GAN here trains with SGD, see _gan_fit). The conv models' same
    bits: test_micro_batches_give_the_same_bits_in_processes_of_1_and_2_devices."""
    one, two, four = (fit_model(devices, "jit", micro_batches=4) for devices in (1, 2, 4))
    chex.assert_trees_all_equal(jax.tree.leaves(two), jax.tree.leaves(one))
    chex.assert_trees_all_equal(jax.tree.leaves(four), jax.tree.leaves(one))
    for plain, micro in zip(jax.tree.leaves(fit_model(1, "jit")), jax.tree.leaves(one)):
        assert np.mean(~np.isclose(plain, micro, rtol=1e-6, atol=1e-4)) <= 1e-5


def test_without_micro_batches_the_device_count_shows_in_the_last_bits():
    """What the test above guards against: the plain step's states on 1 and 4 devices differ."""
    one, four = (_ae_fit(devices, "jit") for devices in (1, 4))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)))


def test_micro_batch_grad_is_the_gradient_of_the_mean_loss():
    """Rows of the global draw per micro-batch: with a random term, the gradient of the whole batch."""

    def loss_fn(w, x, key):
        noisy = x + jax.random.normal(key, x.shape)
        return jnp.mean((noisy @ w) ** 2), {"mean": jnp.mean(noisy)}

    x, w, key = jax.random.normal(jax.random.key(0), (16, 3)), jnp.arange(3.0), jax.random.key(1)
    expected = jax.grad(loss_fn, has_aux=True)(w, x, key)
    with jax.set_mesh(data_mesh(jax.devices()[:2])):
        got = jax.jit(micro_batch_grad, static_argnums=(0, 4))(loss_fn, w, x, key, 4)
    chex.assert_trees_all_close(got, expected, rtol=1e-6)
    with jax.set_mesh(data_mesh(jax.devices()[:4])), pytest.raises(ValueError, match="--micro-batches 2 does not divide over 4 devices"):
        micro_batch_grad(loss_fn, w, x, key, 2)
    with pytest.raises(ValueError, match="batch size 16 does not split into 3 micro-batches"):
        micro_batch_grad(loss_fn, w, x, key, 3)


def test_config_checks_micro_batches():
    assert tiny(micro_batches=4).micro_batches == 4
    with pytest.raises(ValueError, match="batch_size 32 does not split into 5 micro-batches"):
        tiny(micro_batches=5)
    with pytest.raises(ValueError, match="micro_batches needs parallel jit"):
        tiny(micro_batches=4, parallel="pmap")


@pytest.mark.parametrize("fit_model", [_vae_fit, _gan_fit], ids=["vae", "gan"])
def test_pmap_agrees_with_one_device_for_vae_and_gan(fit_model):
    """The VAE draws two keys per step; the GAN has two TrainStates and draws latents."""
    chex.assert_trees_all_close(jax.tree.leaves(fit_model(4, "pmap")), jax.tree.leaves(fit_model(1, "jit")), atol=1e-4)


def test_config_knows_the_parallel_modes():
    assert tiny(parallel="pmap").parallel == "pmap"
    with pytest.raises(ValueError, match="parallel 'dp' is not one of jit, pmap"):
        tiny(parallel="dp")


def test_shard_keys_draw_the_rows_of_the_global_draw():
    def draws(key, rows):
        a, b = jax.random.split(key)
        return {
            "normal": jax.random.normal(a, (rows, 3, 2)),
            "bernoulli": jax.random.bernoulli(jax.random.fold_in(b, 7), 0.3, (rows, 5)),
            "bits8": jax.random.bits(key, (rows, 3), jnp.uint8),
        }

    key = jax.random.key(42)
    whole = draws(key, 8)
    parts = [draws(shard_key(key, shard), 2) for shard in range(4)]
    for name, value in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), value, err_msg=name)


def test_pmap_steps_average_gradients_over_devices():
    def step(state, batch, key):
        grads = jax.grad(lambda p: jnp.mean(state.apply_fn({"params": p}, batch)))(state.params)
        return state, {"grad": grads["w"]}

    state = create_train_state(_Scale(), optax.sgd(1.0), jax.random.key(0), jnp.zeros((1,)))
    batch = jnp.arange(8.0).reshape(4, 2)  # device d holds the pair (2d, 2d+1)
    run = jax.pmap(sync_gradients(step, "d"), "d", in_axes=(None, 0, None))
    _, metrics = run(state, batch, jax.random.key(0))
    np.testing.assert_allclose(metrics["grad"], np.full(4, np.mean(np.arange(8.0))))


class _Scale(nn.Module):
    @nn.compact
    def __call__(self, x):
        return self.param("w", lambda key: jnp.ones(())) * x


def _train_command(workdir, *options) -> list[str]:
    """`jaxae train` of the tiny ae run that `tiny("ae", arch="mlp", code_size=8)` describes."""
    return [
        sys.executable,
        "-m",
        "jaxae.cli",
        "train",
        "--model",
        "ae",
        "--arch",
        "mlp",
        "--code-size",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-size",
        "256",
        "--test-size",
        "64",
        "--steps-per-dispatch",
        "4",
        "--no-progress",
        "--workdir",
        str(workdir),
        *options,
    ]


def _devices_env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _cli_results(workdir, devices, options=()):
    done = subprocess.run(_train_command(workdir, *options), capture_output=True, text=True, timeout=300, env=_devices_env(devices))
    assert done.returncode == 0, done.stderr
    return json.loads((workdir / "results.json").read_text())


def test_four_devices_give_the_single_device_test_mse(tmp_path):
    one = _cli_results(tmp_path / "one", devices=1)
    four = _cli_results(tmp_path / "four", devices=4)
    pmap = runs.train(tiny("ae", arch="mlp", code_size=8, parallel="pmap"), str(tmp_path / "pmap"))
    assert [r["environment"]["device_count"] for r in (one, four, pmap)] == [1, 4, 4]
    assert one["config"] == four["config"] and pmap["config"]["parallel"] == "pmap"
    for result in (four, pmap):
        np.testing.assert_allclose(result["test_mse"], one["test_mse"], rtol=1e-5)
        np.testing.assert_allclose(result["test_psnr"], one["test_psnr"], rtol=1e-5)


def test_with_micro_batches_two_devices_give_the_single_device_numbers_exactly(tmp_path):
    """Processes of 1 and 2 devices, as docs/distributed.md states the claim on a 2-core CPU."""
    one, two = (_cli_results(tmp_path / str(n), devices=n, options=("--micro-batches", "4")) for n in (1, 2))
    assert [r["environment"]["device_count"] for r in (one, two)] == [1, 2] and one["config"]["micro_batches"] == 4
    assert (two["test_mse"], two["test_psnr"]) == (one["test_mse"], one["test_psnr"])
    assert (tmp_path / "2" / "metrics.jsonl").read_text() == (tmp_path / "1" / "metrics.jsonl").read_text()


def test_with_micro_batches_a_run_resumes_on_another_device_count_exactly(tmp_path):
    options = ("--micro-batches", "4", "--schedule", "constant")
    straight = _cli_results(tmp_path / "straight", devices=2, options=(*options, "--epochs", "2"))
    _cli_results(tmp_path / "resumed", devices=1, options=options)
    resumed = _cli_results(tmp_path / "resumed", devices=2, options=(*options, "--epochs", "2", "--resume"))
    assert resumed["test_mse"] == straight["test_mse"]
    assert (tmp_path / "resumed" / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_two_processes_train_in_step_and_agree_with_one(tmp_path, micro_batches):
    """Within float tolerance of one process; with micro-batches, the same bits."""
    workdir = tmp_path / "run"
    command = _train_command(
        workdir,
        "--epochs",
        "2",
        "--micro-batches",
        str(micro_batches),
        "--coordinator",
        f"127.0.0.1:{_free_port()}",
        "--num-processes",
        "2",
    )
    processes = [
        subprocess.Popen(
            [*command, "--process-id", str(i)], env=_devices_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    folders = (workdir, workdir / "process-1")
    results = [json.loads((f / "results.json").read_text()) for f in folders]
    metrics = [(f / "metrics.jsonl").read_text() for f in folders]
    assert metrics[0] == metrics[1] and metrics[0].count("\n") == 2
    assert results[0]["test_mse"] == results[1]["test_mse"]
    assert results[0]["environment"]["device_count"] == 4
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["16", "8"]
    assert not (workdir / "process-1" / "checkpoints").exists()

    single = runs.train(tiny("ae", arch="mlp", code_size=8, epochs=2, micro_batches=micro_batches), str(tmp_path / "single"))
    tolerance = 0 if micro_batches > 1 else 1e-5
    np.testing.assert_allclose(results[0]["test_mse"], single["test_mse"], rtol=tolerance)
    losses = [
        [json.loads(line)["loss"] for line in text.splitlines()]
        for text in (metrics[0], (tmp_path / "single" / "metrics.jsonl").read_text())
    ]
    np.testing.assert_allclose(losses[0], losses[1], rtol=tolerance)


@pytest.mark.parametrize("steps", [1, 3])
def test_unrolled_dispatch_is_straight_line_and_equals_the_scan(steps):
    """unroll=True leaves no loop in the program, even for one step (a scan of length 1 kept one,
    and XLA:CPU ran the GAN's convolutions 9x slower in it), and gives the scan's numbers."""
    net = autoencoder("mlp", 8, (28, 28, 1))
    state = create_train_state(net, optax.adam(1e-3), jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    step = make_train_step(reconstruction(no_corruption))
    images = {"image": jnp.zeros((64, 28, 28, 1), jnp.uint8).at[:, 10:18, 10:18].set(255)}
    indices = np.arange(steps * 8, dtype=np.int32).reshape(steps, 8)
    mesh = data_mesh(jax.devices()[:1])
    unrolled = make_multi_step(step, mesh, unroll=True)
    assert "while" not in unrolled.lower(state, images, indices, jax.random.key(1)).as_text()
    copy = jax.tree.map(jnp.copy, state)
    chex.assert_trees_all_close(
        unrolled(state, images, indices, jax.random.key(1)),
        make_multi_step(step, mesh)(copy, images, indices, jax.random.key(1)),
        rtol=1e-6,
    )


@pytest.mark.slow
def test_micro_batches_give_the_same_bits_in_processes_of_1_and_2_devices():
    """As users run it, one process per device count, for every built-in model. Up to the core
    count the process's XLA:CPU thread pool has the same size (docs/distributed.md); beyond it
    (4 forced devices on 2 cores) the conv models' large weight-gradient contractions differ."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPU cores for a 2-device process with the 1-device process's thread pool")
    script = os.path.join(os.path.dirname(__file__), "scripts", "train_hashes.py")
    processes = [
        subprocess.Popen([sys.executable, script], env=_devices_env(n), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (1, 2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    one, two = (json.loads(out.splitlines()[-1]) for out, _ in outputs)
    assert set(one) == {"ae", "dae", "sr", "vae", "gan", "classifier"} and one == two
