"""GAN training: a state with two optimizers and a two-phase step with the shared signature

    train_step(state, batch, key) -> (state, metrics)

Phase 1 updates only the discriminator (real batch labelled 1, as many generated images labelled
0); phase 2 updates only the generator (a fresh generated batch labelled "real", scored by the
discriminator phase 1 just updated). Each phase draws its latents from its own key, split from the
step key. `state.step` counts whole steps, so `jaxae.train.loop.fit` runs the GAN unchanged.

With `r1` > 0, the discriminator's loss also has the R1 penalty (r1 / 2) * E_real ||grad_x D(x)||^2
(Mescheder et al. 2018), which damps its gradients on the data and so the oscillation of the game.
With `r1_every` = N > 1 it is lazy (Karras et al. 2020): applied on every N-th step only (steps
0, N, 2N, ...), N times as strong, so the same penalty on average for a fraction of its cost.

With `ema_decay` > 0, samples come from `generator_ema`, an exponential moving average of the
generator's parameters updated after every step (Polyak averaging, which often gives better
samples than the last iterate by smoothing the generator's oscillation); with 0 (the default)
there is no average (`generator_ema` is None) and samples come from the trained generator.

A conditional GAN (`GANSettings.conditional`) gives both networks the batch's labels: the
generated images of both phases carry the real batch's labels, so they follow the data's classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from flax.training.train_state import TrainState

from jaxae import losses
from jaxae.objectives import to_float
from jaxae.train.evaluate import map_examples
from jaxae.train.parallel import micro_batch_grad
from jaxae.train.state import create_train_state


@struct.dataclass
class GANState:
    """`step` (int32 scalar), each network's TrainState (params, optimizer), and the averaged
    generator's params (None without an average)."""

    step: jax.Array
    generator: TrainState
    discriminator: TrainState
    generator_ema: Any


@dataclasses.dataclass(frozen=True)
class GANSettings:
    """What the train step does besides the networks: the latent size, the average's decay per
    step, the micro-batches of each phase's gradient (`jaxae.train.parallel.micro_batch_grad`),
    the weight of the discriminator's R1 penalty and the steps between its applications, and
    whether the batch's labels condition both networks."""

    latent: int
    ema_decay: float = 0.0
    micro_batches: int = 1
    r1: float = 0.0
    r1_every: int = 1
    conditional: bool = False


def create_gan_state(
    generator: nn.Module,
    discriminator: nn.Module,
    generator_tx: optax.GradientTransformation,
    discriminator_tx: optax.GradientTransformation,
    key: jax.Array,
    settings: GANSettings,
    image_shape: tuple[int, int, int],
) -> GANState:
    """Initialises both networks from independent keys split from `key` (with a label input
    where conditional); the average (with `ema_decay` > 0) starts as a copy of the generator."""
    g_key, d_key = jax.random.split(key)
    labels = (jnp.zeros((1,), jnp.int32),) if settings.conditional else ()
    g_state = create_train_state(generator, generator_tx, g_key, jnp.zeros((1, settings.latent)), *labels)
    d_state = create_train_state(discriminator, discriminator_tx, d_key, jnp.zeros((1, *image_shape)), *labels)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        generator=g_state,
        discriminator=d_state,
        generator_ema=jax.tree.map(jnp.copy, g_state.params) if settings.ema_decay > 0 else None,
    )


def sample_latents(key: jax.Array, n: int, latent: int) -> jax.Array:
    """Standard normal latents (n, latent) float32, a pure function of `key`."""
    return jax.random.normal(key, (n, latent), jnp.float32)


def _apply(network: TrainState, params, inputs: jax.Array, labels: jax.Array | None) -> jax.Array:
    """A network on its inputs, with the labels (N,) where it is conditional (labels not None)."""
    variables = {"params": params}
    return network.apply_fn(variables, inputs) if labels is None else network.apply_fn(variables, inputs, labels)


def generate(state: GANState, latents: jax.Array, labels: jax.Array | None = None, *, averaged: bool) -> jax.Array:
    """Images (N, H, W, C) float32 in [0, 1] from latents (N, latent) (and labels (N,) int32 for a
    conditional generator), by the averaged generator (the trained one where there is no
    average) or the trained one (averaged=False)."""
    params = state.generator_ema if averaged and state.generator_ema is not None else state.generator.params
    return _apply(state.generator, params, latents, labels)


def _averaged_samples(state, batch, key):
    return generate(state, batch["latent"], batch.get("label"), averaged=True)


def _trained_samples(state, batch, key):
    return generate(state, batch["latent"], batch.get("label"), averaged=False)


def sample_images(state: GANState, key: jax.Array, n: int, latent: int, labels=None, averaged: bool = True):
    """n images (n, H, W, C) float32 in [0, 1] (numpy) from latents drawn from `key` (and the
    labels (n,) of a conditional generator), generated in batches of 1000."""
    inputs = {"latent": sample_latents(key, n, latent)}
    if labels is not None:
        inputs["label"] = jnp.asarray(labels, jnp.int32)
    return map_examples(_averaged_samples if averaged else _trained_samples, state, inputs)


def r1_penalty(discriminate, real: jax.Array, weight: float) -> jax.Array:
    """(weight / 2) * the mean over the N real images of ||grad_x logit(x)||^2, a scalar;
    `discriminate` maps images (N, H, W, C) to logits (N,), each from its own image."""
    grads = jax.grad(lambda x: jnp.sum(discriminate(x)))(real)
    return 0.5 * weight * jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))


def discriminator_phase(state: GANState, settings: GANSettings, real: jax.Array, labels, key: jax.Array) -> tuple[GANState, dict]:
    """One discriminator update on `real` (float, N images; with their labels where conditional,
    which the N generated images from `key`'s latents share).

    Metrics: d_loss (BCE of the real batch plus BCE of the fake batch, nats, mean over N), and the
    discriminator's accuracy on real (d_real_acc) and fake (d_fake_acc) images; with an R1
    penalty, d_r1 (the penalty added to d_loss for the update: 0 on the steps a lazy R1 skips, so
    its mean over steps is the average penalty).
    """
    latents = sample_latents(key, real.shape[0], settings.latent)

    def loss_fn(params, inputs, _):
        real, latents, labels = inputs
        both = None if labels is None else jnp.concatenate([labels, labels])
        fake = generate(state, latents, labels, averaged=False)
        logits = _apply(state.discriminator, params, jnp.concatenate([real, fake]), both)
        real_logits, fake_logits = jnp.split(logits, 2)
        d_loss = jnp.mean(losses.gan_d_loss(real_logits, fake_logits))
        metrics = {"d_loss": d_loss, "d_real_acc": jnp.mean(real_logits > 0), "d_fake_acc": jnp.mean(fake_logits < 0)}
        if settings.r1 == 0:
            return d_loss, metrics

        def r1_term() -> jax.Array:
            return r1_penalty(lambda x: _apply(state.discriminator, params, x, labels), real, settings.r1 * settings.r1_every)

        # Only a lazy R1 takes a conditional: an always-taken lax.cond costs time on the CPU.
        skip = lambda: jnp.zeros(())  # noqa: E731
        penalty = jax.lax.cond(state.step % settings.r1_every == 0, r1_term, skip) if settings.r1_every > 1 else r1_term()
        return d_loss + penalty, {**metrics, "d_r1": penalty}

    inputs = (real, latents, labels)
    grads, metrics = micro_batch_grad(loss_fn, state.discriminator.params, inputs, key, settings.micro_batches)
    return state.replace(discriminator=state.discriminator.apply_gradients(grads=grads)), metrics


def generator_phase(state: GANState, settings: GANSettings, labels, key: jax.Array, n: int) -> tuple[GANState, dict]:
    """One generator update: n images from `key`'s latents (and `labels` where conditional)
    labelled "real" by the current discriminator.

    Metrics: g_loss (non-saturating BCE, nats, mean over n).
    """

    def loss_fn(params, inputs, _):
        latents, labels = inputs
        fake = _apply(state.generator, params, latents, labels)
        g_loss = jnp.mean(losses.gan_g_loss(_apply(state.discriminator, state.discriminator.params, fake, labels)))
        return g_loss, {"g_loss": g_loss}

    latents = sample_latents(key, n, settings.latent)
    grads, metrics = micro_batch_grad(loss_fn, state.generator.params, (latents, labels), key, settings.micro_batches)
    return state.replace(generator=state.generator.apply_gradients(grads=grads)), metrics


def average_generator(state: GANState, ema_decay: float) -> GANState:
    """generator_ema <- d * generator_ema + (1 - d) * generator params, with d = min(ema_decay,
    (1 + t) / (10 + t)) at step t: early on the average follows the fast-changing generator closely.
    Without an average (ema_decay 0), `state` unchanged."""
    if ema_decay == 0:
        return state
    t = state.step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1 + t) / (10 + t))
    return state.replace(generator_ema=optax.incremental_update(state.generator.params, state.generator_ema, 1 - decay))


def make_train_step(settings: GANSettings):
    """The GAN's `train_step(state, batch, key) -> (state, metrics)`: phase 1 then phase 2 on a
    batch {"image": uint8 (N, H, W, C), "label": int32 (N,)} ("label" used where conditional), then
    the generator's average; `loss` = d_loss + g_loss (for fit's NaN check)."""

    def train_step(state: GANState, batch, key: jax.Array) -> tuple[GANState, dict]:
        d_key, g_key = jax.random.split(key)
        labels = batch["label"] if settings.conditional else None
        state, d_metrics = discriminator_phase(state, settings, to_float(batch["image"]), labels, d_key)
        state, g_metrics = generator_phase(state, settings, labels, g_key, batch["image"].shape[0])
        metrics = {**d_metrics, **g_metrics}
        metrics["loss"] = metrics["d_loss"] + metrics["g_loss"]
        return average_generator(state, settings.ema_decay).replace(step=state.step + 1), metrics

    return train_step
