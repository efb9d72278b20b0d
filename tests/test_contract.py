"""The contract every registered model keeps, table-driven over the registry: its results are
present and finite, its pictures are written, a resumed run gives the straight run's numbers, its
train step compiles once, and it trains on images of any shape. A new model is tested by being
registered (the sparse autoencoder of experiments/custom_model.py is, here)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import chex
import jax
import pytest

from jaxae import registry, runs
from jaxae.config import tiny

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("custom_model", ROOT / "experiments" / "custom_model.py")
custom_model = sys.modules["custom_model"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(custom_model)  # registers sparse_ae

# Per model, what keeps its tiny run fast (the MLP variants; the conv ones run in their own tests).
FAST = {"gan": {"arch": "mlp", "latent": 8, "classifier_arch": "mlp"}, "vae": {"hidden": 32}}
EXPECTED = {  # results a model must write, besides the runner's own
    "ae": {"test_mse", "test_psnr"},
    "dae": {"test_mse", "test_psnr", "input_psnr", "blur_psnr"},
    "sr": {"test_psnr", "test_ssim", "bicubic_psnr", "nearest_psnr"},
    "vae": {"test_neg_elbo", "test_recon", "test_kl"},
    "gan": {"fid", "fid_floor", "d_loss", "g_loss"},
    "classifier": {"test_accuracy", "test_loss"},
    "sparse_ae": {"test_mse", "test_active_units"},
}
RUNNER = {"steps_per_second", "compile_seconds", "train_seconds", "steps", "train_images", "test_images", "data_fingerprint"}


def _config(model, **values):
    return tiny(model, dataset="own", batch_size=16, schedule="constant", **{**FAST.get(model, {}), **values})


def test_every_registered_model_is_in_this_table():
    assert set(registry.names()) == set(EXPECTED)


@pytest.fixture(scope="module")
def own(synthetic):
    return synthetic((16, 16, 1), n_train=64, n_test=32)


@pytest.mark.parametrize("model", list(EXPECTED))
def test_results_pictures_and_exact_resume(tmp_path, own, quick_features, model):
    straight = runs.train(_config(model, epochs=2), tmp_path / "straight", data=own)
    assert EXPECTED[model] | RUNNER <= set(straight), EXPECTED[model] | RUNNER - set(straight)
    for key, value in straight.items():
        assert not isinstance(value, float) or math.isfinite(value), key
    assert json.loads((tmp_path / "straight" / "results.json").read_text())["config"]["model"] == model
    assert list((tmp_path / "straight").glob("*.png")), "no picture written"

    runs.train(_config(model, epochs=1), tmp_path / "resumed", data=own)
    resumed = runs.train(_config(model, epochs=2, resume=True), tmp_path / "resumed", data=own)
    numbers = [{k: v for k, v in r.items() if isinstance(v, float) and "second" not in k} for r in (straight, resumed)]
    assert numbers[0] == numbers[1] and resumed["steps"] == straight["steps"] // 2
    metrics = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("straight", "resumed")]
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize("model", list(EXPECTED))
def test_the_train_step_compiles_once(own, model):
    from jaxae.train.loop import fit

    spec = registry.get(model)
    config = _config(model, epochs=3)
    chex.clear_trace_counter()
    step = chex.assert_max_traces(spec.train_step(config, own.info), n=1)
    state = spec.init(config, own.info, len(own.train) // config.batch_size, jax.random.key(0))
    result = fit(state, step, own.train, key=jax.random.key(1), epochs=3, batch_size=16, steps_per_dispatch=2, progress=False)
    assert result.steps == 3 * (64 // 16)


SHAPES = [(16, 16, 1), (32, 32, 3), (64, 48, 3)]  # the data issue's shapes: grey, colour, not square


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("model", ["ae", "dae", "sr", "vae", "gan", "classifier"])
def test_every_model_trains_on_images_of_any_shape(tmp_path, synthetic, quick_features, model, shape):
    """Each built-in model in its default architecture, one epoch on 32 images of each shape."""
    data = synthetic(shape, n_train=32, n_test=16)
    values = {"latent": 8, "classifier_arch": "mlp"} if model == "gan" else {}
    results = runs.train(tiny(model, dataset="own", batch_size=16, **values), tmp_path, data=data)
    assert results["image_shape"] == list(shape)
    assert all(math.isfinite(v) for v in results.values() if isinstance(v, float))
