"""The training loop and the ae/dae runs: determinism, learning, outputs, timings."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxae import data, runs
from jaxae.config import make_config, tiny
from jaxae.models.autoencoder import autoencoder
from jaxae.noise import Noise
from jaxae.objectives import reconstruction
from jaxae.runs.common import optimizer
from jaxae.specs.autoencoder import training_loss
from jaxae.train.evaluate import evaluate
from jaxae.train.loop import NonFiniteError, fit
from jaxae.train.state import create_train_state
from jaxae.train.step import make_train_step


@pytest.fixture(scope="module")
def digits():
    images, _ = data.load("mnist", "train")
    return images[:512]


def _fit(images, seed=0, epochs=2, objective=None, **kw):
    model = autoencoder("mlp", 8, (28, 28, 1))
    state = create_train_state(model, optax.adam(1e-3), jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    objective = objective or reconstruction(Noise("mask", 0.3))
    step = make_train_step(objective)
    return fit(state, step, {"image": images}, key=jax.random.key(seed), epochs=epochs, batch_size=32, progress=False, **kw)


def test_same_seed_same_parameters(digits):
    a, b = _fit(digits[:128]), _fit(digits[:128])
    chex.assert_trees_all_equal(a.state.params, b.state.params)
    c = _fit(digits[:128], seed=1)
    assert not np.allclose(a.state.params["encoder"]["Dense_0"]["kernel"], c.state.params["encoder"]["Dense_0"]["kernel"])


def test_loss_decreases_on_real_digits(digits):
    result = _fit(digits, epochs=4)
    losses = [r["loss"] for r in result.history]
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.steps == 4 * (512 // 32)
    assert result.compile_seconds > 0 and result.steps_per_second > 0


@pytest.mark.parametrize("loss,trains", [("bce", True), ("mse", False)])
def test_conv_autoencoder_on_digits_needs_bce(digits, loss, trains):
    """MSE through the sigmoid stalls at the all-black image on MNIST; BCE (the default there) trains."""
    assert training_loss(make_config("ae", dataset="mnist")) == "bce"
    assert training_loss(make_config("ae", dataset="fashion_mnist")) == "mse"
    assert training_loss(make_config("ae", dataset="mnist", loss="mse")) == "mse"
    state = create_train_state(autoencoder("conv", 30, (28, 28, 1)), optax.adam(1e-3), jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    result = fit(
        state, make_train_step(reconstruction(loss=loss)), {"image": digits}, key=jax.random.key(0), epochs=6, batch_size=32, progress=False
    )
    # A constant all-black output scores the mean squared pixel, about 0.11 on MNIST.
    assert (result.history[-1]["mse"] < 0.06) == trains, result.history[-1]


def test_steps_per_dispatch_does_not_change_the_result(digits):
    a = _fit(digits[:128], steps_per_dispatch=1)
    b = _fit(digits[:128], steps_per_dispatch=4)
    chex.assert_trees_all_close(a.state.params, b.state.params, atol=1e-6)


def test_resume_from_a_saved_state_continues_exactly(digits):
    straight = _fit(digits[:128], epochs=2)
    half = _fit(digits[:128], epochs=1)
    step = make_train_step(reconstruction(Noise("mask", 0.3)))
    resumed = fit(half.state, step, {"image": digits[:128]}, key=jax.random.key(0), epochs=2, batch_size=32, progress=False)
    chex.assert_trees_all_equal(resumed.state.params, straight.state.params)


def test_on_log_states_outlive_the_next_dispatch(digits):
    logged = []
    result = _fit(digits[:128], epochs=3, on_log=lambda state, record: logged.append((state, record)))
    assert [int(state.step) for state, _ in logged] == [4, 8, 12]
    assert [record["step"] for _, record in logged] == [4, 8, 12]
    chex.assert_trees_all_equal(logged[-1][0].params, result.state.params)
    kernels = [np.asarray(state.params["encoder"]["Dense_0"]["kernel"]) for state, _ in logged]
    assert not np.array_equal(kernels[0], kernels[1])


def test_step_compiles_once(digits):
    step = chex.assert_max_traces(make_train_step(reconstruction()), n=1)
    model = autoencoder("mlp", 8, (28, 28, 1))
    state = create_train_state(model, optax.adam(1e-3), jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    fit(state, step, {"image": digits[:128]}, key=jax.random.key(0), epochs=3, batch_size=32, progress=False)


def test_non_finite_loss_stops_training(digits):
    def poisoned(params, apply_fn, batch, key):
        loss, metrics = reconstruction()(params, apply_fn, batch, key)
        return loss * jnp.nan, {**metrics, "loss": loss * jnp.nan}

    with pytest.raises(NonFiniteError, match="step"):
        _fit(digits[:64], objective=poisoned)


def _image_mean(params, batch, key):
    return {"mean": jnp.mean(batch["image"].astype(jnp.float32))}


@pytest.mark.parametrize("count", [300, 256, 7])
def test_evaluate_averages_every_image_once(digits, count):
    """Batches of 64 and, where 64 does not divide the count, a smaller last one."""
    result = evaluate(_image_mean, None, {"image": digits[:count]}, jax.random.key(0), batch_size=64)
    np.testing.assert_allclose(result["mean"], digits[:count].astype(np.float64).mean(), rtol=1e-5)


@pytest.mark.parametrize("model", ["ae", "dae"])
def test_run_writes_results_metrics_and_picture(tmp_path, model):
    noise = {"noise": "salt_and_pepper:0.1"} if model == "dae" else {}
    config = tiny(model, arch="mlp", code_size=8, epochs=2, **noise)
    results = runs.train(config, str(tmp_path))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test_mse"] == results["test_mse"]
    assert 0 < results["test_mse"] < 0.2 and results["test_psnr"] > 5
    assert results["config"]["model"] == model
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (tmp_path / "samples.png").stat().st_size > 0
    if model == "dae":
        assert results["input_psnr"] < results["blur_psnr"]
        assert results["blur_sigma"] > 0


@pytest.mark.parametrize("b1", [0.9, 0.5, 0.0])
def test_optimizer_has_the_configured_adam_momentum(b1):
    """Gradients +1 then -1: Adam's second step is lr (1 - b1) / (1 + b1), up to float32 rounding."""
    config = make_config("gan", schedule="constant", adam_b1=b1)
    tx = optimizer(config, steps_per_epoch=10)
    params = jnp.zeros(3)
    opt_state = tx.init(params)
    for gradient in (1.0, -1.0):
        update, opt_state = tx.update(jnp.full(3, gradient), opt_state, params)
    np.testing.assert_allclose(update, config.learning_rate * (1 - b1) / (1 + b1), rtol=1e-4)
