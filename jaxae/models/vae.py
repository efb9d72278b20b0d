"""Variational autoencoder for images of any size (Kingma & Welling 2014), MLP or convolutional.

The encoder maps float images (N, H, W, C) in [0, 1] to a diagonal Gaussian q(z|x): a mean and
a log-variance per latent unit, each (N, latent) float32. The code is `z = mu + sigma * eps` with
`eps ~ N(0, I)` drawn from a key passed in explicitly. The decoder maps codes (N, latent) to pixel
logits (N, H, W, C); the image mean is `sigmoid(logits)` for both likelihoods:

- "bernoulli": p(x|z) = prod Bernoulli(x; sigmoid(logits)), for binarized {0, 1} images only
  (pixels above 0.5 count as 1);
- "gaussian": p(x|z) = prod N(x; sigmoid(logits), s^2), one learned global log-scale `log s`,
  a continuous density for grey levels in [0, 1] (its nats can be negative and are not
  comparable with Bernoulli nats).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxae import losses
from jaxae.models.autoencoder import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

LIKELIHOODS = ("bernoulli", "gaussian")
# The Gaussian likelihood's scale starts at 0.1, about a reconstruction's error on [0, 1] pixels:
# from 1, Adam needs thousands of steps to get there and the code collapses to the prior meanwhile.
INITIAL_LOG_SCALE = math.log(0.1)
# log-variances are squashed softly into (-LOGVAR_BOUND, LOGVAR_BOUND): exp stays finite in
# float32 (sigma in [5.5e-4, 1.8e3]) and the gradient never vanishes.
LOGVAR_BOUND = 15.0


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from `key`; same shape and dtype as mu."""
    eps = jax.random.normal(key, mu.shape, mu.dtype)
    return mu + jnp.exp(0.5 * logvar) * eps


def binary_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
    """-log Bernoulli(x; sigmoid(logits)) per pixel (nats) for binary x (> 0.5 counts as 1).

    Equal to `losses.bce_with_logits` on {0, 1} targets, but one log-sigmoid per pixel where the
    general form takes two: the k-sample log-likelihood, dominated by this, runs about 2x faster.
    """
    return -jax.nn.log_sigmoid(jnp.where(x > 0.5, logits, -logits))


class VAE(nn.Module):
    """Images (N, H, W, C) in [0, 1] of `image_shape` -> (pixel logits, mu, logvar).

    arch "mlp": 784-hidden-(2*latent) encoder and latent-hidden-784 decoder, ReLU (784-400-20
    by default, the classic reference). arch "conv": the autoencoder's ConvEncoder/ConvDecoder
    (`hidden` unused).
    """

    image_shape: tuple[int, int, int]
    latent: int = 20
    hidden: int = 400
    arch: str = "mlp"
    likelihood: str = "bernoulli"

    def setup(self):
        if self.arch == "mlp":
            self.encoder = MLPEncoder(2 * self.latent, hidden=(self.hidden,))
            self.decoder = MLPDecoder(self.image_shape, hidden=(self.hidden,))
        elif self.arch == "conv":
            self.encoder = ConvEncoder(2 * self.latent)
            self.decoder = ConvDecoder(self.image_shape)
        else:
            raise ValueError(f"unknown architecture {self.arch!r}: use mlp or conv")
        if self.likelihood == "gaussian":
            self.log_scale = self.param("log_scale", nn.initializers.constant(INITIAL_LOG_SCALE), ())
        elif self.likelihood != "bernoulli":
            raise ValueError(f"unknown likelihood {self.likelihood!r}: use {' or '.join(LIKELIHOODS)}")

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One reparameterized code per image from `key`: (logits (N, H, W, C), mu, logvar (N, latent))."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(key, mu, logvar)), mu, logvar

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """q(z|x): mean and log-variance (soft-bounded to +-LOGVAR_BOUND), each (N, latent) float32."""
        mu, raw = jnp.split(self.encoder(x), 2, axis=-1)
        return mu, LOGVAR_BOUND * jnp.tanh(raw / LOGVAR_BOUND)

    def decode(self, z: jax.Array) -> jax.Array:
        """Codes (N, latent) -> pixel logits (N, H, W, C); the image mean is sigmoid(logits)."""
        return self.decoder(z)

    def log_likelihood(self, x: jax.Array, logits: jax.Array) -> jax.Array:
        """log p(x|z) per image (N,), nats summed over the pixels, for `logits = decode(z)`."""
        if self.likelihood == "bernoulli":
            per_pixel = binary_nll(logits, x)
        else:
            per_pixel = losses.gaussian_nll(jax.nn.sigmoid(logits), self.log_scale, x)
        return -jnp.sum(per_pixel.reshape(x.shape[0], -1), axis=-1)

    def decode_log_likelihood(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """log p(x|z) per image (N,) in nats (summed over pixels) for codes z (N, latent)."""
        return self.log_likelihood(x, self.decode(z))


def sample(params, model: VAE, key: jax.Array, n: int) -> jax.Array:
    """n images from the prior: z ~ N(0, I), decoded to means (n, H, W, C) float32 in [0, 1].

    For the Bernoulli likelihood these are the pixel probabilities (Bernoulli means).
    """
    z = jax.random.normal(key, (n, model.latent), jnp.float32)
    return jax.nn.sigmoid(model.apply({"params": params}, z, method=VAE.decode))
