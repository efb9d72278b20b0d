"""GAN models, the two-phase step and the run: phases touch only their own network, keys, traces."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from jaxae import runs
from jaxae.config import tiny
from jaxae.models.gan import DCGANGenerator, gan
from jaxae.train import gan as gan_train
from jaxae.train.checkpoint import Checkpoints
from jaxae.train.loop import fit

LATENT = 8
SHAPE = (28, 28, 1)


def _settings(**values) -> gan_train.GANSettings:
    return gan_train.GANSettings(LATENT, **values)


def _state(seed=0, ema_decay=0.0, conditional=False):
    generator, discriminator = gan("mlp", SHAPE, 10 if conditional else None)
    tx = lambda: optax.adam(2e-4, b1=0.5)  # noqa: E731
    settings = _settings(ema_decay=ema_decay, conditional=conditional)
    return gan_train.create_gan_state(generator, discriminator, tx(), tx(), jax.random.key(seed), settings, SHAPE)


def _step(**values):
    return jax.jit(gan_train.make_train_step(_settings(**values)))


_discriminator_phase = jax.jit(gan_train.discriminator_phase, static_argnums=1)


@pytest.fixture(scope="module")
def batch():
    images = jax.random.randint(jax.random.key(9), (16, 28, 28, 1), 0, 256).astype(jnp.uint8)
    return {"image": images, "label": jnp.arange(16, dtype=jnp.int32) % 10}


@pytest.mark.parametrize("kernel", [4, 5])  # even and odd (every kernel of ConvTranspose2x: test_models)
def test_generator_upsampling_matches_stock_conv_transpose(kernel):
    """The phase-decomposed generator equals one built on nn.ConvTranspose(strides=2, SAME)."""
    ours = DCGANGenerator(SHAPE, kernel_size=(kernel, kernel))
    stock = DCGANGenerator(SHAPE, kernel_size=(kernel, kernel), stock_transpose=True)
    z = jax.random.normal(jax.random.key(0), (3, LATENT))
    params = stock.init(jax.random.key(1), z)
    chex.assert_trees_all_equal_shapes(params, ours.init(jax.random.key(1), z))

    def outputs_and_grads(module):
        apply = lambda p: module.apply(p, z)  # noqa: E731
        return jax.jit(lambda p: (apply(p), jax.grad(lambda p: jnp.sum(jnp.sin(10 * apply(p))))(p)))(params)

    (ours_out, ours_grads), (stock_out, stock_grads) = outputs_and_grads(ours), outputs_and_grads(stock)
    chex.assert_trees_all_close(ours_out, stock_out, atol=1e-5)
    chex.assert_trees_all_close(ours_grads, stock_grads, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("shape", [SHAPE, (16, 16, 1), (32, 32, 3), (64, 48, 3)])
def test_shapes_and_ranges(arch, shape):
    """Shapes and dtypes traced only (jax.eval_shape); the pixel range computed at 28x28x1."""
    generator, discriminator = gan(arch, shape)
    z = jax.random.normal(jax.random.key(0), (5, LATENT))
    generator_params = jax.eval_shape(generator.init, jax.random.key(1), z)
    images = jax.eval_shape(generator.apply, generator_params, z)
    chex.assert_shape(images, (5, *shape))
    logits = jax.eval_shape(discriminator.apply, jax.eval_shape(discriminator.init, jax.random.key(2), images), images)
    chex.assert_shape(logits, (5,))
    chex.assert_type(logits, jnp.float32)
    if shape == SHAPE:
        images = jax.jit(generator.apply)(generator.init(jax.random.key(1), z), z)
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_conditional_networks_take_the_labels(arch):
    generator, discriminator = gan(arch, SHAPE, 10)
    z, labels = jax.random.normal(jax.random.key(0), (4, LATENT)), jnp.array([0, 1, 2, 3])
    g_params = generator.init(jax.random.key(1), z, labels)
    images = generator.apply(g_params, z, labels)
    chex.assert_shape(images, (4, *SHAPE))
    assert not np.allclose(images, generator.apply(g_params, z, labels + 1))
    d_params = discriminator.init(jax.random.key(2), images, labels)
    assert "class_embedding" in d_params["params"]
    d_params = jax.tree.map(lambda p: p + 0.1, d_params)  # the embedding starts small; move it
    logits = discriminator.apply(d_params, images, labels)
    chex.assert_shape(logits, (4,))
    assert not np.allclose(logits, discriminator.apply(d_params, images, labels + 1))


def test_unknown_arch():
    with pytest.raises(ValueError, match="mlp or conv"):
        gan("resnet", SHAPE)


def test_same_key_same_latents():
    a = gan_train.sample_latents(jax.random.key(3), 4, LATENT)
    chex.assert_trees_all_equal(a, gan_train.sample_latents(jax.random.key(3), 4, LATENT))
    assert not np.allclose(a, gan_train.sample_latents(jax.random.key(4), 4, LATENT))
    chex.assert_shape(a, (4, LATENT))


def test_discriminator_phase_leaves_the_generator_unchanged(batch):
    state = _state()
    new, metrics = _discriminator_phase(state, _settings(), batch["image"].astype(jnp.float32) / 255, None, jax.random.key(0))
    chex.assert_trees_all_equal(new.generator, state.generator)
    assert not np.allclose(new.discriminator.params["Dense_0"]["kernel"], state.discriminator.params["Dense_0"]["kernel"])
    assert set(metrics) == {"d_loss", "d_real_acc", "d_fake_acc"}


def test_both_phases_train_against_the_trained_generator_not_its_average(batch):
    """The average is only for samples: replacing it changes neither phase's result."""
    state = _state(ema_decay=0.9)
    scrambled = state.replace(generator_ema=jax.tree.map(jnp.zeros_like, state.generator_ema))
    step = _step(ema_decay=0.9)
    (new, metrics), (other, other_metrics) = step(state, batch, jax.random.key(0)), step(scrambled, batch, jax.random.key(0))
    chex.assert_trees_all_equal((new.generator, new.discriminator, metrics), (other.generator, other.discriminator, other_metrics))


def test_r1_penalty_of_a_linear_discriminator_is_half_gamma_times_its_squared_weights():
    w = jax.random.normal(jax.random.key(0), (28 * 28,))
    real = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
    penalty = gan_train.r1_penalty(lambda x: x.reshape(x.shape[0], -1) @ w + 3.0, real, weight=5.0)
    np.testing.assert_allclose(penalty, 2.5 * jnp.sum(w**2), rtol=1e-6)


def test_r1_adds_its_penalty_to_the_discriminator_update_only(batch):
    real = batch["image"].astype(jnp.float32) / 255
    state = _state()
    (plain, plain_metrics), (penalized, metrics) = (
        _discriminator_phase(state, _settings(r1=r1), real, None, jax.random.key(0)) for r1 in (0.0, 10.0)
    )
    assert "d_r1" not in plain_metrics and float(metrics["d_r1"]) > 0
    assert metrics["d_loss"] == plain_metrics["d_loss"]  # reported without the penalty
    chex.assert_trees_all_equal(penalized.generator, plain.generator)
    assert not np.allclose(penalized.discriminator.params["Dense_0"]["kernel"], plain.discriminator.params["Dense_0"]["kernel"])


def test_lazy_r1_applies_a_stronger_penalty_on_every_nth_step_only(batch):
    real = batch["image"].astype(jnp.float32) / 255
    state, key = _state(), jax.random.key(0)
    _, every_step = _discriminator_phase(state, _settings(r1=10.0), real, None, key)
    lazy = {
        step: _discriminator_phase(state.replace(step=jnp.int32(step)), _settings(r1=10.0, r1_every=3), real, None, key)
        for step in (0, 1, 2, 3)
    }
    for step in (0, 3):
        np.testing.assert_allclose(lazy[step][1]["d_r1"], 3 * every_step["d_r1"], rtol=1e-5)
    for step in (1, 2):
        assert float(lazy[step][1]["d_r1"]) == 0.0
    unpenalized, _ = _discriminator_phase(state.replace(step=jnp.int32(1)), _settings(), real, None, key)
    chex.assert_trees_all_close(lazy[1][0].discriminator.params, unpenalized.discriminator.params, rtol=1e-6)


def test_generator_phase_leaves_the_discriminator_unchanged():
    state = _state()
    new, metrics = jax.jit(gan_train.generator_phase, static_argnums=(1, 4))(state, _settings(), None, jax.random.key(0), 16)
    chex.assert_trees_all_equal(new.discriminator, state.discriminator)
    weights = lambda s: s.generator.params["MLPDecoder_0"]["Dense_0"]["kernel"]  # noqa: E731
    assert not np.allclose(weights(new), weights(state))
    assert set(metrics) == {"g_loss"}


def test_train_step_updates_both_and_is_deterministic(batch):
    state = _state()
    step = _step()
    new, metrics = step(state, batch, jax.random.key(5))
    again, _ = step(state, batch, jax.random.key(5))
    chex.assert_trees_all_equal(new, again)
    assert int(new.step) == 1 and int(new.generator.step) == 1 and int(new.discriminator.step) == 1
    chex.assert_tree_all_finite(metrics)
    np.testing.assert_allclose(metrics["loss"], metrics["d_loss"] + metrics["g_loss"], rtol=1e-6)
    for name in ("d_real_acc", "d_fake_acc"):
        assert 0.0 <= float(metrics[name]) <= 1.0
    other, _ = step(state, batch, jax.random.key(6))
    assert not np.allclose(
        other.generator.params["MLPDecoder_0"]["Dense_0"]["kernel"], new.generator.params["MLPDecoder_0"]["Dense_0"]["kernel"]
    )


def test_step_compiles_once_under_fit(batch):
    chex.clear_trace_counter()
    step = chex.assert_max_traces(gan_train.make_train_step(_settings()), n=1)
    images = {k: np.tile(np.asarray(v), (4, *[1] * (v.ndim - 1))) for k, v in batch.items()}
    result = fit(_state(), step, images, key=jax.random.key(0), epochs=3, batch_size=16, steps_per_dispatch=2, progress=False)
    assert result.steps == 3 * 4 and int(result.state.step) == 12
    assert [set(r) >= {"d_loss", "g_loss", "d_real_acc", "d_fake_acc", "loss"} for r in result.history] == [True] * 3


@pytest.mark.parametrize("ema_decay", [0.9, 0.999])
def test_generator_average_follows_its_formula(batch, ema_decay):
    """After steps 0 and 1, the average is d1 * (d0 * p0 + (1 - d0) * p1) + (1 - d1) * p2, with
    d_t = min(ema_decay, (1 + t) / (10 + t))."""
    step = _step(ema_decay=ema_decay)
    states = [_state(ema_decay=ema_decay)]
    for i in range(2):
        states.append(step(states[-1], batch, jax.random.key(i))[0])
    p0, p1, p2 = (s.generator.params for s in states)
    d0, d1 = min(ema_decay, 1 / 10), min(ema_decay, 2 / 11)
    expected = jax.tree.map(lambda a, b, c: d1 * (d0 * a + (1 - d0) * b) + (1 - d1) * c, p0, p1, p2)
    chex.assert_trees_all_close(states[-1].generator_ema, expected, atol=1e-7)
    latents = gan_train.sample_latents(jax.random.key(1), 4, LATENT)
    averaged, trained = (gan_train.generate(states[-1], latents, averaged=averaged) for averaged in (True, False))
    assert not np.allclose(averaged, trained)


def test_without_an_average_samples_come_from_the_trained_generator(batch):
    state, _ = _step()(_state(ema_decay=0.0), batch, jax.random.key(0))
    assert state.generator_ema is None
    latents = gan_train.sample_latents(jax.random.key(1), 4, LATENT)
    chex.assert_trees_all_equal(gan_train.generate(state, latents, averaged=True), gan_train.generate(state, latents, averaged=False))


def test_sample_images_are_a_function_of_the_key():
    state = _state()
    a = gan_train.sample_images(state, jax.random.key(1), 10, LATENT)
    chex.assert_shape(a, (10, 28, 28, 1))
    latents = gan_train.sample_latents(jax.random.key(1), 10, LATENT)
    chex.assert_trees_all_close(a, gan_train.generate(state, latents, averaged=True), atol=1e-6)


def test_tiny_run_writes_results_and_pictures(tmp_path, quick_features):
    config = tiny("gan", arch="mlp", epochs=2, latent=LATENT, ema_decay=0.99)
    results = runs.train(config, str(tmp_path / "run"))
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in (
        "fid",
        "fid_without_ema",
        "fid_floor",
        "classifier_accuracy",
        "feature_network",
        "d_loss",
        "g_loss",
        "steps_per_second",
        "compile_seconds",
    ):
        assert key in written, key
    assert written["fid"] == results["fid"] and written["fid"] > written["fid_floor"] > 0
    assert written["feature_network"].startswith("classifier-mnist-") and written["fid_samples"] == 64
    for name in ("samples_epoch_01.png", "samples_epoch_02.png", "losses.png"):
        assert (tmp_path / "run" / name).exists(), name
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_state_survives_a_checkpoint(tmp_path, batch):
    trained, _ = _step()(_state(), batch, jax.random.key(0))
    checkpoints = Checkpoints(tmp_path, tiny("gan"))
    checkpoints.save(trained)
    restored = checkpoints.restore(_state(seed=1))
    checkpoints.close()
    chex.assert_trees_all_equal(serialization.to_state_dict(restored), serialization.to_state_dict(trained))
    assert int(restored.step) == 1


def test_conditional_step_uses_the_labels(batch):
    state = _state(conditional=True)
    step = _step(conditional=True)
    new, metrics = step(state, batch, jax.random.key(0))
    other, _ = step(state, {**batch, "label": (batch["label"] + 1) % 10}, jax.random.key(0))
    chex.assert_tree_all_finite(metrics)
    assert not np.allclose(
        new.generator.params["MLPDecoder_0"]["Dense_0"]["kernel"], other.generator.params["MLPDecoder_0"]["Dense_0"]["kernel"]
    )


def test_tiny_conditional_run_scores_its_classes(tmp_path, quick_features):
    config = tiny("gan", arch="mlp", epochs=1, latent=LATENT, conditional=True)
    results = runs.train(config, str(tmp_path / "run"))
    assert 0.0 <= results["conditional_accuracy"] <= 1.0 and results["fid"] > 0
    from PIL import Image

    picture = Image.open(tmp_path / "run" / "samples_epoch_01.png")
    assert picture.size[1] == 2 * (10 * (28 + 2) + 2)  # ten rows, one per class, drawn 2x


def test_a_run_without_labels_says_why_it_has_no_fid(tmp_path, synthetic):
    results = runs.train(tiny("gan", arch="mlp", latent=LATENT, dataset="own"), tmp_path / "run", data=synthetic(labels=False))
    assert results["fid"] is None and "no labels" in results["fid_skipped"]
