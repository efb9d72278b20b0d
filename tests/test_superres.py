"""Super-resolution: degradation shapes, the network's sub-pixel layout and start, scores, the run."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxae import data, metrics, noise, runs
from jaxae.config import tiny
from jaxae.models.superres import EPS, SuperResolver, superres
from jaxae.objectives import no_corruption, to_float
from jaxae.runs.common import restoration_metrics
from jaxae.specs.superres import corruption, low_res, network_input


@pytest.fixture(scope="module")
def clothes():
    images, _ = data.load("fashion_mnist", "test")
    return {"image": images[:64]}


@pytest.mark.parametrize("factor,side", [(2, 14), (4, 7)])
def test_degradation_shapes(factor, side):
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    low = low_res(factor)(None, x)
    chex.assert_shape(low, (3, side, side, 1))
    for sr_input, shape in (("blurry", (3, 28, 28, 1)), ("lowres", (3, side, side, 1))):
        config = tiny("sr", factor=factor, sr_input=sr_input)
        chex.assert_shape(network_input(config)(low), shape)
        chex.assert_trees_all_equal(corruption(config)(jax.random.key(1), x), network_input(config)(low))
    for method in ("nearest", "bicubic"):
        back = noise.upsample(low, factor, method)
        chex.assert_shape(back, x.shape)
        assert 0.0 <= float(back.min()) and float(back.max()) <= 1.0


def test_degradation_of_a_flat_image_is_exact():
    x = jnp.full((1, 28, 28, 1), 0.25)
    for factor in (2, 4):
        chex.assert_trees_all_close(noise.upsample(low_res(factor)(None, x), factor, "bicubic"), x, atol=1e-6)


@pytest.mark.parametrize("sr_input", ["blurry", "lowres"])
@pytest.mark.parametrize("factor", [2, 4])
def test_network_starts_from_the_interpolation(sr_input, factor):
    """Zero-initialised correction: the output is the input's (bicubic or nearest) upsampling."""
    clean = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
    config = tiny("sr", factor=factor, sr_input=sr_input)
    x = corruption(config)(None, clean)
    model = superres(sr_input, factor)
    logits = model.apply(model.init(jax.random.key(1), x), x)
    chex.assert_shape(logits, (2, 28, 28, 1))
    chex.assert_type(logits, jnp.float32)
    start = network_input(config)(low_res(factor)(None, clean)) if sr_input == "blurry" else noise.upsample(x, factor, "nearest")
    chex.assert_trees_all_close(jax.nn.sigmoid(logits), jnp.clip(start, EPS, 1 - EPS), atol=1e-5)


def test_unknown_input_and_bad_factor():
    with pytest.raises(ValueError, match="blurry or lowres"):
        superres("sharp", 2)
    with pytest.raises(ValueError, match="does not divide"):
        x = jnp.zeros((1, 4, 4, 1))
        SuperResolver(upscale=7).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="factor 3 is not one of 2, 4"):
        tiny("sr", factor=3)
    with pytest.raises(ValueError, match="not divisible"):
        low_res(3)(None, jnp.zeros((1, 28, 28, 1)))


def test_scores_of_a_perfect_restoration(clothes):
    """Identical images: PSNR is capped at metrics.psnr's max_db (100 dB), SSIM is 1."""
    perfect = restoration_metrics({"same": lambda x: x}, no_corruption, clothes, jax.random.key(0))["same"]
    assert perfect["psnr"] == 100.0 and perfect["mse"] == 0.0
    np.testing.assert_allclose(perfect["ssim"], 1.0, atol=1e-5)


def test_bicubic_scores_match_the_metrics(clothes):
    clean = to_float(jnp.asarray(clothes["image"]))
    restored = noise.upsample(noise.downsample(clean, 2), 2, "bicubic")
    restorers = {"bicubic": lambda low: noise.upsample(low, 2, "bicubic")}
    bicubic = restoration_metrics(restorers, low_res(2), clothes, jax.random.key(0))["bicubic"]
    np.testing.assert_allclose(bicubic["psnr"], float(jnp.mean(metrics.psnr(restored, clean))), rtol=1e-5)
    np.testing.assert_allclose(bicubic["ssim"], float(jnp.mean(metrics.ssim(restored, clean))), rtol=1e-5)
    assert 10 < bicubic["psnr"] < 40 and 0 < bicubic["ssim"] < 1


def test_run_writes_results_and_picture(tmp_path):
    config = tiny("sr", dataset="fashion_mnist", factor=2, sr_input="blurry")
    results = runs.train(config, str(tmp_path))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for key in (
        "test_psnr",
        "test_ssim",
        "bicubic_psnr",
        "bicubic_ssim",
        "nearest_psnr",
        "nearest_ssim",
        "steps_per_second",
        "compile_seconds",
    ):
        assert np.isfinite(on_disk[key]) and on_disk[key] == results[key]
    assert on_disk["factor"] == 2 and on_disk["sr_input"] == "blurry"
    assert results["bicubic_psnr"] > results["nearest_psnr"]
    assert results["test_psnr"] > results["bicubic_psnr"] - 1.0  # 8 steps from the bicubic start
    rows = 4  # low-res (nearest), bicubic, network, original; 28-pixel images, 2-pixel gaps, drawn 2x
    assert Image.open(tmp_path / "samples.png").size[1] == 2 * (rows * (28 + 2) + 2)


@pytest.mark.parametrize("sr_input", ["blurry", "lowres"])
def test_colour_photographs_of_another_size(tmp_path, synthetic, sr_input):
    dataset = synthetic((32, 48, 3), n_train=64, n_test=16)
    results = runs.train(tiny("sr", sr_input=sr_input, batch_size=16, dataset="own"), tmp_path / "run", data=dataset)
    assert results["image_shape"] == [32, 48, 3] and np.isfinite(results["test_psnr"])
    picture = Image.open(tmp_path / "run" / "samples.png")
    assert picture.mode == "RGB" and picture.size[1] == 2 * (4 * (32 + 2) + 2)
