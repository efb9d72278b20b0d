"""Per-element losses (optax style): nothing is reduced here; objectives decide how to reduce.

Units: `bce_with_logits` and `gaussian_nll` are in nats per element; summing over pixels gives nats
per image. `kl_diag_gaussian` is in nats per latent unit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax


def mse(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Squared error per element."""
    return jnp.square(prediction - target)


def bce_with_logits(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Bernoulli negative log-likelihood per element (nats), for targets in [0, 1]; stable for any logit."""
    return optax.sigmoid_binary_cross_entropy(logits, target)


def gaussian_nll(mean: jax.Array, log_scale: jax.Array, target: jax.Array) -> jax.Array:
    """Negative log-density of `target` under N(mean, exp(log_scale)^2), per element (nats)."""
    z = (target - mean) * jnp.exp(-log_scale)
    return 0.5 * jnp.square(z) + log_scale + 0.5 * math.log(2 * math.pi)


def kl_diag_gaussian(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent unit (nats), in closed form."""
    return 0.5 * (jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar)


def gan_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Discriminator BCE per example: real labelled 1, fake labelled 0; shapes (N,) -> (N,)."""
    return bce_with_logits(real_logits, jnp.ones_like(real_logits)) + bce_with_logits(fake_logits, jnp.zeros_like(fake_logits))


def gan_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Generator BCE per example with its fakes labelled "real" (non-saturating loss); (N,) -> (N,)."""
    return bce_with_logits(fake_logits, jnp.ones_like(fake_logits))
