"""Importance-weighted VAEs: the models' log-weight interface, the IWAE objective (k = 1 against the
ELBO, stable log-mean-exp, KL warm-up), the DReG gradient, and the k-sample estimator."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxae.metrics import iwae_nll
from jaxae.models.autoencoder import MLPDecoder, MLPEncoder
from jaxae.models.vae import (
    IWAE_PAPER,
    VAE,
    HierarchicalVAE,
    gaussian_log_density,
    iwae_paper_model,
    reparameterize,
    standard_normal_log_density,
)
from jaxae.objectives import binarize, iwae, kl_weight, to_float, vae

SHAPE = (6, 10, 3)  # neither 28x28 nor one channel


def _models():
    return {
        "vae": VAE(SHAPE, latent=3, hidden=(8,), activation="tanh"),
        "hierarchical": HierarchicalVAE(SHAPE, latents=(4, 3), hidden=((8,), (6,))),
    }


@functools.cache
def _model_and_params(name):
    model = _models()[name]
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, *SHAPE)), jax.random.key(0))["params"]
    return model, params


def _binary_images(n=5, shape=SHAPE, seed=0):
    return jnp.asarray((np.random.default_rng(seed).random((n, *shape)) < 0.4).astype(np.float32))


def _uint8(x):
    return (x * 255).astype(jnp.uint8)


def _scaled(params, factor):
    """Parameters times `factor`: a decoder that depends strongly on z, q far from the posterior."""
    return jax.tree.map(lambda p: factor * p, params)


# --- models ---------------------------------------------------------------------------------------


def test_relu_mlp_vae_is_the_autoencoder_mlp_halves():
    """The default VAE has the parameters and outputs of MLPEncoder / MLPDecoder with one hidden
    layer, as it always had: its checkpoints and numbers stay valid."""

    class Halves(nn.Module):
        def setup(self):
            self.encoder = MLPEncoder(2 * 5, hidden=(16,))
            self.decoder = MLPDecoder(hidden=(16,), image_shape=(28, 28, 1))

        def __call__(self, x):
            return self.decoder(jnp.split(self.encoder(x), 2, axis=-1)[0])

    x = _binary_images(3, (28, 28, 1))
    model = VAE((28, 28, 1), latent=5, hidden=16)
    params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))["params"]
    reference = jax.jit(Halves().init)(jax.random.key(0), x)["params"]
    chex.assert_trees_all_equal(params, reference)
    decoded = jax.jit(lambda p: model.apply({"params": p}, model.apply({"params": p}, x, method="encode")[0], method="decode"))(params)
    chex.assert_trees_all_equal(decoded, jax.jit(Halves().apply)({"params": reference}, x))


@pytest.mark.parametrize("name", ["vae", "hierarchical"])
def test_interface_shapes_and_consistency(name):
    model, params = _model_and_params(name)
    x, k = _binary_images(), 7

    @jax.jit
    def outputs(key):
        apply = functools.partial(model.apply, {"params": params})
        zs, log_q = apply(x, key, k, method="sample_posterior")
        mu, logvar = apply(x, method="encode")
        return dict(
            zs=zs,
            log_q=log_q,
            log_q_at_zs=apply(x, zs, method="log_posterior"),
            joint=apply(x, zs, method="log_joint"),
            terms=apply(x, key, k, method="log_weight_terms"),
            log_w=apply(x, key, k, method="log_weights"),
            encoded=(mu, logvar),
            decoded=apply(mu, method="decode"),
            pictures=(apply(x, method="reconstruct"), apply(key, 4, method="generate")),
        )

    out = outputs(jax.random.key(1))
    units = model.latents if name == "hierarchical" else (model.latent,)
    chex.assert_shape(list(out["zs"]), [(k, 5, u) for u in units])
    chex.assert_shape([out["log_q"], out["log_w"], *out["joint"]], (k, 5))
    # the same codes: log q from the draw is q's density at the codes, and the terms add up
    chex.assert_trees_all_close(out["log_q_at_zs"], out["log_q"], rtol=1e-5, atol=1e-4)
    log_px_z, log_pz = out["joint"]
    chex.assert_trees_all_close(out["terms"], (log_px_z, log_pz - out["log_q"]), rtol=1e-5, atol=1e-4)
    chex.assert_trees_all_close(out["log_w"], out["terms"][0] + out["terms"][1], rtol=1e-6)
    chex.assert_shape(out["encoded"], (5, model.latent))
    chex.assert_shape(out["decoded"], (5, *SHAPE))
    for images in out["pictures"]:
        assert images.shape[1:] == SHAPE and float(images.min()) >= 0 and float(images.max()) <= 1


def test_gaussian_log_densities_match_scipy():
    z, mu, logvar = jnp.array([[0.3, -1.2], [2.0, 0.1]]), jnp.array([0.5, -1.0]), jnp.array([-1.0, 0.7])
    expected = jnp.sum(jax.scipy.stats.norm.logpdf(z, mu, jnp.exp(0.5 * logvar)), axis=-1)
    chex.assert_trees_all_close(gaussian_log_density(z, mu, logvar), expected, rtol=1e-6)
    chex.assert_trees_all_close(standard_normal_log_density(z), jnp.sum(jax.scipy.stats.norm.logpdf(z), -1), rtol=1e-6)


def test_hierarchical_estimate_is_exact_when_every_layer_is_the_prior_and_x_ignores_z():
    """q(z1|x) = q(z2|z1) = p(z1|z2) = N(0, I) and p(x|z1) = p(x): every log weight is log p(x),
    and so is the estimate, for any k (here 6, in chunks of 4, the last one padded)."""
    model, params = _model_and_params("hierarchical")
    params = jax.tree.map(lambda p: p, params)
    for net in ("posteriors_0", "posteriors_1", "priors_0"):
        last = sorted(params[net])[-1]
        params[net][last] = jax.tree.map(jnp.zeros_like, params[net][last])
    params["decoder"]["Dense_0"]["kernel"] = jnp.zeros_like(params["decoder"]["Dense_0"]["kernel"])
    x = _binary_images()
    means = jax.jit(functools.partial(model.apply, method="reconstruct"))({"params": params}, x)  # the same for any z
    exact = -float(jnp.mean(jnp.sum(jnp.where(x > 0.5, jnp.log(means), jnp.log1p(-means)), axis=(1, 2, 3))))
    estimate = iwae_nll(model, params, x, jax.random.key(3), 6, batch_size=5, chunk_size=4)
    assert estimate == pytest.approx(exact, rel=1e-5)


def test_the_paper_architecture():
    one, two = iwae_paper_model((28, 28, 1), 1), iwae_paper_model((28, 28, 1), 2)
    assert (one.latent, one.hidden, one.activation) == (50, (200, 200), "tanh")
    assert (two.latents, two.hidden, two.activation) == ((100, 50), ((200, 200), (100, 100)), "tanh")
    assert IWAE_PAPER[1]["latent"] == 50
    x = jnp.zeros((1, 28, 28, 1))
    sizes = {}
    for name, model in (("one", one), ("two", two)):
        params = jax.eval_shape(model.init, jax.random.key(0), x, jax.random.key(0))["params"]
        sizes[name] = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    dense = lambda *w: sum(a * b + b for a, b in zip(w, w[1:]))  # noqa: E731
    assert sizes["one"] == dense(784, 200, 200, 100) + dense(50, 200, 200, 784)
    assert sizes["two"] == dense(784, 200, 200, 200) + dense(100, 100, 100, 100) + dense(50, 100, 100, 200) + dense(100, 200, 200, 784)
    wide = iwae_paper_model((28, 28, 1), 2, hidden=((300, 300), (150, 150)))
    assert wide.hidden == ((300, 300), (150, 150))
    with pytest.raises(ValueError, match="1 or 2"):
        iwae_paper_model((28, 28, 1), 3)


# --- the objective --------------------------------------------------------------------------------


def test_k1_is_the_single_sample_elbo_exactly():
    model, params = _model_and_params("vae")
    batch, key = {"image": _uint8(_binary_images())}, jax.random.key(4)

    @jax.jit
    def both():
        # the one-sample ELBO written out: the step key splits into binarization and eps keys
        data_key, eps_key = jax.random.split(key)
        apply = functools.partial(model.apply, {"params": params})
        x = binarize(data_key, to_float(batch["image"]))
        mu, logvar = apply(x, method="encode")
        z = reparameterize(eps_key, mu, logvar)
        log_px_z = apply(x, apply(z, method="decode"), method="log_likelihood")
        log_pz = jnp.sum(jax.scipy.stats.norm.logpdf(z), -1)
        log_q = jnp.sum(jax.scipy.stats.norm.logpdf(z, mu, jnp.exp(0.5 * logvar)), -1)
        return iwae(1)(params, model.apply, batch, key), -jnp.mean(log_px_z + log_pz - log_q)

    (loss, m), written_out = both()
    assert float(loss) == float(m["neg_iwae"]) == float(m["neg_elbo"])
    assert float(loss) == pytest.approx(float(written_out), rel=1e-6)


def test_k1_shares_the_codes_of_the_closed_form_elbo_and_its_kl_in_expectation():
    model, params = _model_and_params("vae")
    batch = {"image": _uint8(_binary_images())}
    both = jax.jit(jax.vmap(lambda key: (iwae(1)(params, model.apply, batch, key)[1], vae()(params, model.apply, batch, key)[1])))
    sampled, closed = both(jax.random.split(jax.random.key(5), 4000))
    chex.assert_trees_all_equal(sampled["recon"], closed["recon"])  # the same z per key
    error = float(jnp.std(sampled["kl"])) / math.sqrt(4000)
    assert float(jnp.mean(sampled["kl"])) == pytest.approx(float(jnp.mean(closed["kl"])), abs=4 * error)
    assert float(jnp.mean(sampled["neg_elbo"])) == pytest.approx(float(jnp.mean(closed["neg_elbo"])), abs=4 * error)


def _stub_apply(log_px_z, log_ratio):
    """An apply_fn whose model returns fixed log-weight terms (k, N), whatever the images."""

    def apply_fn(variables, x, key, k, method):
        assert method == "log_weight_terms" and k == log_px_z.shape[0]
        return log_px_z, log_ratio

    return apply_fn


def test_log_mean_exp_is_stable_for_large_and_mixed_weights():
    # per image, weights of -3000 nats: exp underflows, the log-mean-exp must not
    log_px_z = jnp.array([[-3000.0, 10.0], [-3000.0 + math.log(3.0), -1e30], [-1e30, 10.0]])
    log_ratio = jnp.zeros_like(log_px_z)
    batch = {"image": jnp.zeros((2, 1, 1, 1), jnp.uint8)}
    loss, m = iwae(3, dynamic_binarization=False)(None, _stub_apply(log_px_z, log_ratio), batch, jax.random.key(0))
    expected = [-3000.0 + math.log(4.0 / 3.0), 10.0 + math.log(2.0 / 3.0)]
    assert float(loss) == pytest.approx(-np.mean(expected), rel=1e-6)
    assert math.isfinite(float(m["neg_iwae"]))


def test_the_k_sample_elbo_averages_the_log_weights_and_is_the_bound_at_k1():
    log_px_z, log_ratio = jnp.array([[-50.0, -60.0], [-52.0, -58.0], [-49.0, -70.0]]), jnp.array([[-3.0, -1.0], [-5.0, -2.0], [-4.0, 0.0]])
    batch = {"image": jnp.zeros((2, 1, 1, 1), jnp.uint8)}
    objective = iwae(3, warmup_steps=100, dynamic_binarization=False, bound="elbo")
    for step, weight in ((40, 0.4), (None, 1.0)):
        loss, m = objective(None, _stub_apply(log_px_z, log_ratio), batch, jax.random.key(0), step=step)
        assert float(loss) == pytest.approx(-float(jnp.mean(log_px_z + weight * log_ratio)), rel=1e-6), step
        assert float(m["neg_elbo"]) == pytest.approx(-float(jnp.mean(log_px_z + log_ratio)), rel=1e-6)
        assert float(m["neg_iwae"]) < float(m["neg_elbo"])  # the bound is still reported, and is tighter
    model, params = _model_and_params("hierarchical")
    real = {"image": _uint8(_binary_images())}
    one = jax.jit(lambda bound: iwae(1, bound=bound)(params, model.apply, real, jax.random.key(3)), static_argnums=0)
    chex.assert_trees_all_equal(one("elbo"), one("iwae"))


def test_kl_warmup_weights_the_latent_term_linearly_from_zero():
    assert kl_weight(None, 1.0, 100) == 1.0 and kl_weight(7, 0.5, 0) == 0.5
    chex.assert_trees_all_close([kl_weight(s, 1.0, 100) for s in (0, 25, 100, 1000)], [0.0, 0.25, 1.0, 1.0])
    log_px_z, log_ratio = jnp.array([[-50.0, -60.0], [-52.0, -58.0]]), jnp.array([[-3.0, -1.0], [-5.0, -2.0]])
    objective = iwae(2, warmup_steps=100, dynamic_binarization=False)
    batch = {"image": jnp.zeros((2, 1, 1, 1), jnp.uint8)}
    for step, weight in ((0, 0.0), (40, 0.4), (500, 1.0), (None, 1.0)):
        loss, m = objective(None, _stub_apply(log_px_z, log_ratio), batch, jax.random.key(0), step=step)
        expected = -jnp.mean(jax.nn.logsumexp(log_px_z + weight * log_ratio, axis=0) - math.log(2))
        assert float(loss) == pytest.approx(float(expected), rel=1e-6), step
        assert float(m["neg_iwae"]) == pytest.approx(-float(jnp.mean(jax.nn.logsumexp(log_px_z + log_ratio, 0) - math.log(2))), rel=1e-6)
    model, params = _model_and_params("vae")
    real = {"image": _uint8(_binary_images())}
    loss, m = vae(warmup_steps=10)(params, model.apply, real, jax.random.key(0), step=jnp.asarray(3))
    assert float(loss) == pytest.approx(float(m["recon"] + 0.3 * m["kl"]), rel=1e-6)


@pytest.mark.parametrize("name", ["vae", "hierarchical"])
def test_the_bound_tightens_with_k(name):
    model, params = _model_and_params(name)
    params = _scaled(params, 2.0)
    batch = {"image": _uint8(_binary_images())}

    @jax.jit
    @jax.vmap
    def losses_over_k(key):
        return [iwae(k, dynamic_binarization=False)(params, model.apply, batch, key)[0] for k in (1, 5, 50)]

    means = [float(jnp.mean(v)) for v in losses_over_k(jax.random.split(jax.random.key(6), 300))]
    assert means[0] > means[1] > means[2], means


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="at least 1"):
        iwae(0)
    with pytest.raises(ValueError, match="unknown gradient"):
        iwae(5, gradient="reinforce")
    with pytest.raises(ValueError, match="unknown bound"):
        iwae(5, bound="cubo")
    with pytest.raises(ValueError, match="dreg is the importance-weighted bound's gradient"):
        iwae(5, gradient="dreg", bound="elbo")


# --- DReG -----------------------------------------------------------------------------------------

ENCODER = {"vae": ("encoder",), "hierarchical": ("posteriors_0", "posteriors_1")}
K = 4


def _dreg_reference(params, apply_fn, x, key, k, weight):
    """The DReG estimator as two surrogate terms, each a forward pass: the decoder's plain IWAE
    gradient, the encoder's path gradient weighted (1 - a) w~ + a w~^2."""
    _, eps_key = jax.random.split(key)
    zs, _ = apply_fn({"params": params}, x, eps_key, k, method="sample_posterior")

    def log_w(p, zs):
        log_px_z, log_pz = apply_fn({"params": p}, x, zs, method="log_joint")
        return log_px_z + weight * (log_pz - apply_fn({"params": jax.lax.stop_gradient(p)}, x, zs, method="log_posterior"))

    normalized = jax.lax.stop_gradient(jax.nn.softmax(log_w(params, zs), axis=0))
    decoder = jnp.sum(normalized * log_w(params, jax.lax.stop_gradient(zs)))
    encoder = jnp.sum(normalized * ((1 - weight) + weight * normalized) * log_w(jax.lax.stop_gradient(params), zs))
    return -(decoder + encoder) / x.shape[0]


def _path_only(params, apply_fn, x, key, k, weight):
    """The IWAE loss with q's parameters stopped in log q: its gradient is the path gradient alone
    with the weights w~, biased for k > 1 (the score term it drops does not vanish)."""
    _, eps_key = jax.random.split(key)
    zs, _ = apply_fn({"params": params}, x, eps_key, k, method="sample_posterior")
    log_px_z, log_pz = apply_fn({"params": params}, x, zs, method="log_joint")
    log_q = apply_fn({"params": jax.lax.stop_gradient(params)}, x, zs, method="log_posterior")
    return -jnp.mean(jax.nn.logsumexp(log_px_z + weight * (log_pz - log_q), axis=0))


def _paired_z(a: dict, b: dict, parts) -> np.ndarray:
    """Per encoder coordinate, the mean of a - b over the keys in standard errors (paired draws)."""
    diff = jax.tree.leaves({n: jax.tree.map(lambda u, v: u - v, a[n], b[n]) for n in parts})
    diff = np.concatenate([np.asarray(d).reshape(d.shape[0], -1) for d in diff], axis=1)
    return diff.mean(0) / (diff.std(0) / np.sqrt(diff.shape[0]) + 1e-12)


@pytest.mark.parametrize("name", ["vae", pytest.param("hierarchical", marks=pytest.mark.slow)])
def test_dreg_gradient(name):
    """For each of 1024 keys, at KL weights 0.5 (mid warm-up) and 1: the DReG gradient is the
    two-surrogate reference estimator, its decoder part is the standard gradient's; over the keys,
    its encoder part has the standard gradient's mean within Monte Carlo error, while the path
    gradient alone is rejected at KL weight 1 (the test can see a bias)."""
    model, params = _model_and_params(name)
    params = _scaled(params, 2.0)
    x = _binary_images(3)

    @jax.jit
    def gradients(keys, step):
        def per_key(key):
            loss = lambda gradient: (
                lambda p: iwae(K, gradient, warmup_steps=10, dynamic_binarization=False)(
                    p, model.apply, {"image": _uint8(x)}, key, step=step
                )[0]
            )  # noqa: E731
            reference = (jax.grad(f)(params, model.apply, x, key, K, kl_weight(step, 1.0, 10)) for f in (_dreg_reference, _path_only))
            return (jax.grad(loss("standard"))(params), jax.grad(loss("dreg"))(params), *reference)

        return jax.vmap(per_key)(keys)

    keys = jax.random.split(jax.random.key(8), 1024)
    decoder = lambda g: {n: v for n, v in g.items() if n not in ENCODER[name]}  # noqa: E731
    for step in (5, 10):
        standard, dreg, reference, path = gradients(keys, step)
        chex.assert_tree_all_finite(dreg)
        # two float32 paths to gradients up to about 10 in size: one element in 24576 came 1.7e-5 apart
        chex.assert_trees_all_close(dreg, reference, rtol=1e-4, atol=1e-4)
        chex.assert_trees_all_close(decoder(dreg), decoder(standard), rtol=1e-4, atol=1e-4)
        assert np.abs(_paired_z(dreg, standard, ENCODER[name])).max() < 5.0, step
    assert np.abs(_paired_z(path, standard, ENCODER[name])).max() > 10.0


# --- the estimator --------------------------------------------------------------------------------


class _CountingVAE(VAE):
    """A VAE that counts how often its log weights are traced."""

    traces = [0]

    def log_weights(self, x, key, k):
        self.traces[0] += 1
        return super().log_weights(x, key, k)


def test_estimator_compiles_once_and_is_the_objectives_bound_with_the_same_draws():
    """Batches of 4 and 3, one chunk holding all k draws: each batch's estimate is the
    log-mean-exp of the model's weights with the chunk's key; one compilation per batch shape."""
    model = _CountingVAE(SHAPE, latent=3, hidden=(8,))
    params = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)), jax.random.key(0))["params"]
    x, key = _binary_images(7), jax.random.key(1)
    first = iwae_nll(model, params, x, key, 10, batch_size=4, chunk_size=10)
    again = iwae_nll(_CountingVAE(SHAPE, latent=3, hidden=(8,)), params, x, key, 10, batch_size=4, chunk_size=10)
    assert first == again and model.traces[0] == 2

    @jax.jit
    def log_mean_weights(x, key):
        return jax.nn.logsumexp(
            VAE(SHAPE, latent=3, hidden=(8,)).apply({"params": params}, x, key, 10, method="log_weights"), 0
        ) - math.log(10)

    halves = [log_mean_weights(x[i : i + 4], jax.random.fold_in(jax.random.fold_in(key, b), 0)) for b, i in enumerate((0, 4))]
    assert first == pytest.approx(-float(jnp.mean(jnp.concatenate(halves))), rel=1e-6)
