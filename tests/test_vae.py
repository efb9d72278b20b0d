"""The variational autoencoder: KL, reparameterization, objective, IWAE estimate, run outputs."""

import functools
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import losses, runs
from jaxae.config import make_config, tiny
from jaxae.data import DataInfo
from jaxae.metrics import iwae_nll
from jaxae.models.vae import LOGVAR_BOUND, VAE, binary_nll, reparameterize, sample
from jaxae.objectives import binarize, vae
from jaxae.specs.vae import binarize_once, build_model, uses_binarization

MNIST = DataInfo((28, 28, 1), 10, 60000, 10000)

LATENT = 3


@functools.cache
def _model_and_params(arch="mlp", likelihood="bernoulli"):
    """A small VAE and its initial parameters (shared: tests change copies only)."""
    model = VAE((28, 28, 1), latent=LATENT, hidden=16, arch=arch, likelihood=likelihood)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(0))["params"]
    return model, params


def _binary_images(n=32, seed=1):
    """Synthetic binary float images (n, 28, 28, 1): a random square blob each, 5% flipped pixels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[:28, :28]
    centres = rng.integers(8, 20, size=(n, 2, 1, 1))
    blob = (np.abs(rows - centres[:, 0]) < 5) & (np.abs(cols - centres[:, 1]) < 5)
    return jnp.asarray((blob ^ (rng.random(blob.shape) < 0.05)).astype(np.float32)[..., None])


@functools.cache
def _loss_and_grads():
    """jit(value_and_grad) of the VAE objective of the small MLP model; beta is an argument."""
    model, _ = _model_and_params()
    return jax.jit(jax.value_and_grad(lambda p, batch, key, beta: vae(beta)(p, model.apply, batch, key)[0]))


def _iwae_fns(model):
    """(encode(params, x) -> (mu, logvar), log_lik(params, x, z) -> log p(x|z) (N,))."""
    encode = lambda p, x: model.apply({"params": p}, x, method=VAE.encode)  # noqa: E731
    log_lik = lambda p, x, z: model.apply({"params": p}, x, model.apply({"params": p}, z, method=VAE.decode), method=VAE.log_likelihood)  # noqa: E731
    return encode, log_lik


# --- KL ---------------------------------------------------------------------------------------


def test_kl_matches_the_general_gaussian_closed_form():
    mu = jnp.array([0.0, 1.0, -2.0, 0.3])
    logvar = jnp.array([0.0, 0.0, math.log(0.25), math.log(4.0)])
    sigma = np.exp(0.5 * np.asarray(logvar))
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2, m2 = 0, s2 = 1.
    expected = -np.log(sigma) + (sigma**2 + np.asarray(mu) ** 2) / 2 - 0.5
    chex.assert_trees_all_close(losses.kl_diag_gaussian(mu, logvar), expected, rtol=1e-6, atol=1e-7)
    assert float(losses.kl_diag_gaussian(jnp.zeros(()), jnp.zeros(()))) == 0.0


def test_kl_matches_a_monte_carlo_estimate():
    mu, logvar = jnp.array([0.5, -1.0, 0.0]), jnp.array([-1.0, 0.5, -3.0])

    @jax.jit
    def monte_carlo(mu, logvar):
        shape = (200_000, 3)
        z = reparameterize(jax.random.key(0), jnp.broadcast_to(mu, shape), jnp.broadcast_to(logvar, shape))
        log_q = jax.scipy.stats.norm.logpdf(z, mu, jnp.exp(0.5 * logvar))
        return jnp.mean(log_q - jax.scipy.stats.norm.logpdf(z), axis=0)

    chex.assert_trees_all_close(monte_carlo(mu, logvar), losses.kl_diag_gaussian(mu, logvar), atol=0.02)


def test_binary_nll_is_the_bernoulli_cross_entropy_on_binary_pixels():
    logits = jnp.array([-200.0, -3.0, -0.1, 0.0, 0.7, 5.0, 200.0])
    for target in (0.0, 1.0):
        x = jnp.full_like(logits, target)
        chex.assert_trees_all_close(binary_nll(logits, x), losses.bce_with_logits(logits, x), rtol=1e-6)


# --- reparameterization -----------------------------------------------------------------------


def test_gradients_flow_through_the_reparameterization():
    mu, logvar = jnp.array([0.5, -1.0]), jnp.array([0.2, -0.4])
    key = jax.random.key(3)
    eps = (reparameterize(key, mu, logvar) - mu) / jnp.exp(0.5 * logvar)
    d_mu, d_logvar = jax.grad(lambda m, lv: jnp.sum(reparameterize(key, m, lv)), argnums=(0, 1))(mu, logvar)
    chex.assert_trees_all_close(d_mu, jnp.ones(2))
    chex.assert_trees_all_close(d_logvar, 0.5 * jnp.exp(0.5 * logvar) * eps, rtol=1e-5)


def test_encoder_learns_from_the_reconstruction_through_z():
    """With beta = 0 the encoder reaches the loss only through z = mu + sigma * eps."""
    model, params = _model_and_params()
    batch = {"image": (_binary_images(8) * 255).astype(jnp.uint8)}
    _, grads = _loss_and_grads()(params, batch, jax.random.key(0), 0.0)
    chex.assert_tree_all_finite(grads)
    for leaf in jax.tree.leaves(grads["encoder"]):
        assert float(jnp.max(jnp.abs(leaf))) > 0


def test_same_key_same_code_and_loss():
    model, params = _model_and_params()
    x = _binary_images(4)
    apply = jax.jit(model.apply)
    first = apply({"params": params}, x, jax.random.key(5))
    chex.assert_trees_all_equal(first, apply({"params": params}, x, jax.random.key(5)))
    other = apply({"params": params}, x, jax.random.key(6))
    assert not np.allclose(first[0], other[0])
    objective = jax.jit(lambda p, b, k: vae()(p, model.apply, b, k))
    batch = {"image": (x * 200).astype(jnp.uint8)}
    key = jax.random.key(1)
    chex.assert_trees_all_equal(objective(params, batch, key), objective(params, batch, key))


@pytest.mark.parametrize("arch,likelihood", [("mlp", "gaussian"), ("conv", "bernoulli")])
def test_shapes_and_metrics(arch, likelihood):
    model, params = _model_and_params(arch, likelihood)
    x = _binary_images(4)
    logits, mu, logvar = jax.eval_shape(model.apply, {"params": params}, x, jax.random.key(0))
    chex.assert_shape(logits, (4, 28, 28, 1))
    chex.assert_shape((mu, logvar), (4, LATENT))
    assert ("log_scale" in params) == (likelihood == "gaussian")
    objective = jax.jit(lambda p, b, k: vae(beta=0.5)(p, model.apply, b, k))
    loss, m = objective(params, {"image": (x * 255).astype(jnp.uint8)}, jax.random.key(0))
    chex.assert_trees_all_close(m["neg_elbo"], m["recon"] + m["kl"], rtol=1e-6)
    chex.assert_trees_all_close(loss, m["recon"] + 0.5 * m["kl"], rtol=1e-6)


def test_loss_is_finite_for_extreme_log_variances():
    model, params = _model_and_params()
    x = _binary_images(8)
    batch = {"image": (x * 255).astype(jnp.uint8)}
    encode = jax.jit(lambda p: model.apply({"params": p}, x, method=VAE.encode)[1])
    for raw in (-1e4, -200.0, 200.0, 1e4):
        extreme = jax.tree.map(lambda p: p, params)
        extreme["encoder"]["Dense_1"]["bias"] = params["encoder"]["Dense_1"]["bias"].at[LATENT:].set(raw)
        assert float(jnp.max(jnp.abs(encode(extreme)))) <= LOGVAR_BOUND
        chex.assert_tree_all_finite(_loss_and_grads()(extreme, batch, jax.random.key(0), 1.0))
    assert math.isfinite(iwae_nll(model, extreme, x, jax.random.key(0), k=4))


def test_dynamic_binarization_draws_fresh_bits_per_key():
    model, params = _model_and_params()
    grey = {"image": jnp.full((4, 28, 28, 1), 128, jnp.uint8)}
    metric = jax.jit(lambda k: vae()(params, model.apply, grey, k)[1]["recon"])
    assert float(metric(jax.random.key(0))) != float(metric(jax.random.key(1)))
    once = binarize_once(np.full((4, 28, 28, 1), 128, np.uint8))
    assert set(np.unique(once)) == {0, 255}
    np.testing.assert_array_equal(once, binarize_once(np.full((4, 28, 28, 1), 128, np.uint8)))


def test_binarize_draws_each_grey_level_with_its_probability():
    # 6 pixels per image; pixels j and j + 3 take the two halves of the same random word
    levels = np.array([0, 1, 128, 255, 254, 100], np.float32) / 255.0
    n = 40_000
    x = jnp.broadcast_to(jnp.asarray(levels).reshape(1, 2, 3, 1), (n, 2, 3, 1))
    draws = jax.jit(binarize)(jax.random.key(3), x)
    chex.assert_shape(draws, x.shape)
    chex.assert_type(draws, jnp.float32)
    chex.assert_trees_all_equal(draws, binarize(jax.random.key(3), x))
    assert not np.array_equal(np.asarray(draws), np.asarray(binarize(jax.random.key(4), x)))
    per_pixel = np.asarray(draws).reshape(n, -1)
    assert set(np.unique(per_pixel)) == {0.0, 1.0}
    assert per_pixel[:, 0].max() == 0.0 and per_pixel[:, 3].min() == 1.0  # exact at black and white
    spread = np.sqrt(levels * (1 - levels) / n)
    np.testing.assert_array_less(np.abs(per_pixel.mean(0) - levels), 5 * spread + 1e-12)
    assert abs(np.corrcoef(per_pixel[:, 2], per_pixel[:, 5])[0, 1]) < 5 / np.sqrt(n)  # one word, independent halves


def test_sample_is_deterministic_in_unit_range():
    model, params = _model_and_params()
    images = sample(params, model, jax.random.key(0), 5)
    chex.assert_shape(images, (5, 28, 28, 1))
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    chex.assert_trees_all_equal(images, sample(params, model, jax.random.key(0), 5))


# --- importance-weighted log-likelihood -------------------------------------------------------


def test_iwae_is_exact_when_the_posterior_is_the_prior_and_z_is_ignored():
    """q(z|x) = p(z) and p(x|z) = p(x): every weight is p(x); k = 7 in chunks of 4 (one padded)."""
    model, params = _model_and_params()
    params = jax.tree.map(lambda p: p, params)
    params["encoder"]["Dense_1"] = jax.tree.map(jnp.zeros_like, params["encoder"]["Dense_1"])
    params["decoder"]["Dense_0"]["kernel"] = jnp.zeros_like(params["decoder"]["Dense_0"]["kernel"])
    x = _binary_images(10)
    log_px = _iwae_fns(model)[1](params, x, jnp.zeros((10, LATENT)))
    exact = -float(jnp.mean(log_px))
    estimate = iwae_nll(model, params, x, jax.random.key(0), k=7, batch_size=4, chunk_size=4)
    assert estimate == pytest.approx(exact, rel=1e-5)


def test_iwae_is_below_the_negative_elbo_and_decreases_with_k():
    model, params = _model_and_params()
    # A decoder that depends strongly on z, so that q(z|x) is far from the true posterior.
    params = jax.tree.map(lambda p: p, params)
    params["decoder"]["Dense_0"]["kernel"] = 2.0 * params["decoder"]["Dense_0"]["kernel"]
    x = _binary_images(32)
    encode, log_lik = _iwae_fns(model)
    mu, logvar = encode(params, x)
    log_px_z = jax.jit(jax.vmap(lambda k: log_lik(params, x, reparameterize(k, mu, logvar))))(
        jax.random.split(jax.random.key(9), 2000)
    )  # (2000, 32)
    neg_elbo = float(-jnp.mean(log_px_z) + jnp.mean(jnp.sum(losses.kl_diag_gaussian(mu, logvar), -1)))
    one_sample_error = float(jnp.mean(jnp.std(log_px_z, axis=0))) / math.sqrt(x.shape[0])
    estimates = [iwae_nll(model, params, x, jax.random.key(1), k=k, batch_size=16) for k in (1, 10, 100)]
    assert estimates[0] == pytest.approx(neg_elbo, abs=4 * one_sample_error)  # k = 1: a one-sample negative ELBO
    assert all(later < earlier for earlier, later in zip(estimates, estimates[1:])), estimates
    assert estimates[1] < neg_elbo - 4 * one_sample_error, (estimates, neg_elbo)


def test_iwae_rejects_k_zero():
    model, params = _model_and_params()
    with pytest.raises(ValueError, match="at least 1"):
        iwae_nll(model, params, _binary_images(2), jax.random.key(0), k=0)


# --- configuration and the run ----------------------------------------------------------------


def test_binarization_and_likelihood_follow_the_config():
    assert uses_binarization(make_config("vae")) and build_model(make_config("vae"), MNIST).likelihood == "bernoulli"
    grey = make_config("vae", binarize=False)
    assert not uses_binarization(grey) and build_model(grey, MNIST).likelihood == "gaussian"
    assert build_model(make_config("vae", dataset="fashion_mnist"), MNIST).likelihood == "gaussian"
    default = build_model(make_config("vae"), MNIST)
    assert (default.arch, default.hidden, default.latent) == ("mlp", 400, 20)


@pytest.mark.slow
def test_run_writes_results_and_pictures(tmp_path):
    config = tiny("vae", latent=2, nll_samples=8, hidden=32)
    results = runs.train(config, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    for name in ("test_neg_elbo", "test_recon", "test_kl", "test_nll"):
        assert math.isfinite(saved[name]), name
    assert saved["nll_samples"] == 8 and saved["steps_per_second"] > 0 and saved["compile_seconds"] > 0
    assert saved["likelihood"] == "bernoulli" and "summed over 784 pixel values" in saved["units"]
    assert saved["test_neg_elbo"] == pytest.approx(saved["test_recon"] + saved["test_kl"], rel=1e-5)
    assert results["test_nll"] <= results["test_neg_elbo"] + 1.0
    for picture in ("samples.png", "reconstructions.png", "latent_grid.png", "latent_scatter.png"):
        assert (tmp_path / picture).stat().st_size > 0, picture


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_conditional_vae_samples_a_row_per_class(tmp_path, quick_features, arch):
    config = tiny("vae", arch=arch, conditional=True, hidden=64, epochs=2)
    results = runs.train(config, str(tmp_path))
    assert 0.0 <= results["conditional_accuracy"] <= 1.0 and math.isfinite(results["test_neg_elbo"])
    from PIL import Image

    assert Image.open(tmp_path / "samples.png").size[1] == 2 * (10 * (28 + 2) + 2)


def test_conditional_vae_decodes_the_class_it_is_given():
    model = VAE((28, 28, 1), latent=LATENT, hidden=16, num_classes=10)
    x, labels = _binary_images(4), jnp.array([0, 1, 2, 3])
    params = model.init(jax.random.key(0), x, jax.random.key(1), labels)["params"]
    z = jnp.zeros((4, LATENT))
    a, b = (model.apply({"params": params}, z, ys, method="decode") for ys in (labels, labels + 1))
    assert not np.allclose(a, b)
    mu = model.apply({"params": params}, x, labels, method="encode")[0]
    assert not np.allclose(mu, model.apply({"params": params}, x, labels + 1, method="encode")[0])


@pytest.mark.parametrize(
    "options",
    [
        dict(objective="iwae", iwae_samples=3, gradient="dreg"),
        dict(stochastic_layers=2, objective="iwae", iwae_samples=2, activation="tanh", depth=2, kl_warmup_epochs=0.5),
        dict(objective="elbo_k", iwae_samples=3),
    ],
)
def test_importance_weighted_runs_through_the_runner(tmp_path, options):
    results = runs.train(tiny("vae", hidden=32, latent=4, latent2=2, hidden2=16, nll_samples=6, **options), str(tmp_path))
    assert math.isfinite(results["test_nll"]) and results["iwae_samples"] == options["iwae_samples"]
    assert results["test_neg_iwae"] <= results["test_neg_elbo"] + 1.0


def test_settings_that_do_not_go_together_are_refused():
    with pytest.raises(ValueError, match="two stochastic layers are built of mlps"):
        make_config("vae", stochastic_layers=2, arch="conv")
    with pytest.raises(ValueError, match="a conditional VAE trains on the ELBO"):
        make_config("vae", conditional=True, nll_samples=10)
    with pytest.raises(ValueError, match="dreg is the iwae objective's gradient"):
        make_config("vae", objective="elbo_k", gradient="dreg")
