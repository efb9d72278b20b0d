"""Variational autoencoders for images of any size: one stochastic layer (`VAE`, Kingma & Welling
2014; MLP or convolutional) or a stack of them (`HierarchicalVAE`, Burda et al. 2016).

Images are float (N, H, W, C) in [0, 1], (H, W, C) = the model's `image_shape`. Every stochastic
layer is a diagonal Gaussian with a learned mean and log-variance per unit; a code is drawn as
`z = mu + sigma * eps`, `eps ~ N(0, I)`, from a key passed in explicitly. Log-variances are
soft-bounded (`bounded_logvar`). The decoder gives pixel logits; the image mean is
`sigmoid(logits)` for both likelihoods:

- "bernoulli": p(x|z) = prod Bernoulli(x; sigmoid(logits)), for binarized {0, 1} images only
  (pixels above 0.5 count as 1);
- "gaussian": p(x|z) = prod N(x; sigmoid(logits), s^2), one learned global log-scale `log s`,
  a continuous density for grey levels in [0, 1] (its nats can be negative and are not
  comparable with Bernoulli nats).

Both models share one interface, used by `jaxae.objectives.iwae` and `jaxae.metrics.iwae_nll`
(call them with `model.apply(variables, ..., method="name")`). `zs` is a tuple with one code array
(k, N, units) per stochastic layer, bottom (nearest the image) first; every log-density is (k, N)
float32, in nats summed over the pixels and latent units of each image:

- `sample_posterior(x, key, k) -> (zs, log q(z|x))`: k reparameterized draws per image;
- `log_posterior(x, zs) -> log q(z|x)` and `log_joint(x, zs) -> (log p(x|z), log p(z))`;
- `log_weight_terms(x, key, k) -> (log p(x|z), log p(z) - log q(z|x))` for k fresh draws, and
  `log_weights(x, key, k)`, their sum: the log importance weights log p(x, z) - log q(z|x);
- pictures: `encode(x) -> (mu, logvar)` of the top layer (N, latent), `decode(z) -> logits`
  for top-layer codes (..., latent), `reconstruct(x)` and `generate(key, n)`, image means in
  [0, 1]; `latent` is the top layer's size.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxae import losses
from jaxae.models.autoencoder import ConvDecoder, ConvEncoder

LIKELIHOODS = ("bernoulli", "gaussian")
ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}
# The Gaussian likelihood's scale starts at 0.1, about a reconstruction's error on [0, 1] pixels:
# from 1, Adam needs thousands of steps to get there and the code collapses to the prior meanwhile.
INITIAL_LOG_SCALE = math.log(0.1)
# log-variances are squashed softly into (-LOGVAR_BOUND, LOGVAR_BOUND): exp stays finite in
# float32 (sigma in [5.5e-4, 1.8e3]) and the gradient never vanishes.
LOGVAR_BOUND = 15.0
LOG_2PI = math.log(2 * math.pi)
# Burda et al. 2016: tanh MLPs; one stochastic layer of 50 units over two deterministic layers of
# 200, or layers of 100 and 50 units over deterministic layers of 200, 200 and 100, 100.
IWAE_PAPER = {
    1: dict(latent=50, hidden=(200, 200)),
    2: dict(latents=(100, 50), hidden=((200, 200), (100, 100))),
}


def bounded_logvar(raw: jax.Array) -> jax.Array:
    """A network's raw log-variance output squashed softly into (-LOGVAR_BOUND, LOGVAR_BOUND)."""
    return LOGVAR_BOUND * jnp.tanh(raw / LOGVAR_BOUND)


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from `key`; same shape and dtype as mu."""
    eps = jax.random.normal(key, mu.shape, mu.dtype)
    return mu + jnp.exp(0.5 * logvar) * eps


def gaussian_log_density(z: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mu, exp(logvar)) summed over the last axis (nats); the arguments broadcast."""
    return jnp.sum(-0.5 * (jnp.square(z - mu) * jnp.exp(-logvar) + logvar + LOG_2PI), axis=-1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) summed over the last axis (nats)."""
    return jnp.sum(-0.5 * (jnp.square(z) + LOG_2PI), axis=-1)


def binary_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
    """-log Bernoulli(x; sigmoid(logits)) per pixel (nats) for binary x (> 0.5 counts as 1).

    Equal to `losses.bce_with_logits` on {0, 1} targets, but one log-sigmoid per pixel where the
    general form takes two: the k-sample log-likelihood, dominated by this, runs about 2x faster.
    """
    return -jax.nn.log_sigmoid(jnp.where(x > 0.5, logits, -logits))


class MLP(nn.Module):
    """(..., inputs) -> (..., outputs): dense layers of `hidden` widths with `activation`
    ("relu" or "tanh"), then a linear layer; any leading axes.

    The leading axes are flattened into one: XLA:CPU runs the gradient of a dense layer on a
    (k, N, inputs) array 2-2.7x slower than on the same rows as one (k * N, inputs) matrix.
    """

    outputs: int
    hidden: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        activation = ACTIVATIONS[self.activation]
        leading = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        for width in self.hidden:
            x = activation(nn.Dense(width)(x))
        return nn.Dense(self.outputs)(x).reshape(*leading, self.outputs)


def _check_options(activation: str, likelihood: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: use {' or '.join(ACTIVATIONS)}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}: use {' or '.join(LIKELIHOODS)}")


def _image_log_likelihood(likelihood: str, x: jax.Array, logits: jax.Array, log_scale) -> jax.Array:
    """log p(x|z) (...,) in nats summed over pixels, for images x (N, H, W, C) and logits
    (..., N, H, W, C) (any leading sample axes)."""
    if likelihood == "bernoulli":
        per_pixel = binary_nll(logits, x)
    else:
        per_pixel = losses.gaussian_nll(jax.nn.sigmoid(logits), log_scale, x)
    return -jnp.sum(per_pixel.reshape(*logits.shape[:-3], -1), axis=-1)


class VAE(nn.Module):
    """One stochastic layer of `latent` units. Images (N, H, W, C) in [0, 1] -> (pixel logits,
    mu, logvar) with one code per image; see the module docstring for the shared interface.

    arch "mlp": an encoder with `hidden` widths (an int: one layer) and 2 * latent linear outputs
    (mean, raw log-variance), a decoder with the widths reversed, `activation` between layers
    (784-400-20 ReLU by default, the classic reference). arch "conv": the autoencoder's
    ConvEncoder/ConvDecoder (ReLU; `hidden` and `activation` unused).

    With `num_classes` set it is a conditional VAE: `__call__`, `encode`, `decode`,
    `reconstruct` and `generate` take int32 labels (N,) too, whose one-hot code the encoder sees
    beside the image (appended to the flat pixels, or as constant extra channels for the conv
    encoder) and the decoder beside the code.
    """

    image_shape: tuple[int, int, int]
    latent: int = 20
    hidden: int | Sequence[int] = 400
    arch: str = "mlp"
    likelihood: str = "bernoulli"
    activation: str = "relu"
    num_classes: int | None = None

    def setup(self):
        _check_options(self.activation, self.likelihood)
        widths = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        if self.arch == "mlp":
            self.encoder = MLP(2 * self.latent, widths, self.activation)
            self.decoder = MLP(math.prod(self.image_shape), widths[::-1], self.activation)
        elif self.arch == "conv":
            self.encoder = ConvEncoder(2 * self.latent)
            self.decoder = ConvDecoder(image_shape=self.image_shape)
        else:
            raise ValueError(f"unknown architecture {self.arch!r}: use mlp or conv")
        if self.likelihood == "gaussian":
            self.log_scale = self.param("log_scale", nn.initializers.constant(INITIAL_LOG_SCALE), ())

    def __call__(self, x: jax.Array, key: jax.Array, labels: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One reparameterized code per image from `key`: (logits (N, H, W, C), mu, logvar (N, latent))."""
        mu, logvar = self.encode(x, labels)
        return self.decode(reparameterize(key, mu, logvar), labels), mu, logvar

    def _one_hot(self, labels: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """The labels' one-hot codes broadcast to `shape` (..., N, num_classes)."""
        return jnp.broadcast_to(jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32), shape)

    def encode(self, x: jax.Array, labels: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """q(z|x) (q(z|x, y) where conditional): mean and log-variance (soft-bounded to
        +-LOGVAR_BOUND), each (N, latent) float32."""
        inputs = x.reshape(x.shape[0], -1) if self.arch == "mlp" else x
        if self.num_classes is not None:
            one_hot = jax.nn.one_hot(labels, self.num_classes, dtype=inputs.dtype)
            if self.arch == "conv":
                one_hot = jnp.broadcast_to(one_hot[:, None, None, :], (*x.shape[:-1], self.num_classes))
            inputs = jnp.concatenate([inputs, one_hot], axis=-1)
        mu, raw = jnp.split(self.encoder(inputs), 2, axis=-1)
        return mu, bounded_logvar(raw)

    def decode(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """Codes (..., latent) (and labels (N,) where conditional, z (..., N, latent)) -> pixel
        logits (..., H, W, C); the image mean is sigmoid(logits)."""
        if self.num_classes is not None:
            z = jnp.concatenate([z, self._one_hot(labels, (*z.shape[:-1], self.num_classes))], axis=-1)
        if self.arch == "mlp":
            logits = self.decoder(z)
        else:
            logits = self.decoder(z.reshape(-1, z.shape[-1]))
        return logits.reshape(*z.shape[:-1], *self.image_shape)

    def log_likelihood(self, x: jax.Array, logits: jax.Array) -> jax.Array:
        """log p(x|z) per image, nats summed over the pixels, for `logits = decode(z)`: images x
        (N, H, W, C) and logits (..., N, H, W, C) give (..., N)."""
        return _image_log_likelihood(self.likelihood, x, logits, getattr(self, "log_scale", None))

    def _draw(self, x: jax.Array, key: jax.Array, k: int):
        mu, logvar = self.encode(x)
        eps = jax.random.normal(key, (k, *mu.shape), mu.dtype)
        return mu + jnp.exp(0.5 * logvar) * eps, eps, logvar

    def sample_posterior(self, x: jax.Array, key: jax.Array, k: int) -> tuple[tuple[jax.Array], jax.Array]:
        """k codes per image from q(z|x): ((z (k, N, latent),), log q(z|x) (k, N))."""
        z, eps, logvar = self._draw(x, key, k)
        return (z,), jnp.sum(-0.5 * (jnp.square(eps) + logvar + LOG_2PI), axis=-1)

    def log_posterior(self, x: jax.Array, zs: tuple[jax.Array]) -> jax.Array:
        """log q(z|x) (k, N) of codes zs = (z (k, N, latent),)."""
        mu, logvar = self.encode(x)
        return gaussian_log_density(zs[0], mu, logvar)

    def log_joint(self, x: jax.Array, zs: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(log p(x|z), log p(z)), each (k, N), of codes zs = (z (k, N, latent),); p(z) = N(0, I)."""
        (z,) = zs
        return self.log_likelihood(x, self.decode(z)), standard_normal_log_density(z)

    def log_weight_terms(self, x: jax.Array, key: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        """(log p(x|z), log p(z) - log q(z|x)), each (k, N), for k codes per image drawn from `key`
        (the same codes as `sample_posterior`); the second in one fused form, without the constants."""
        z, eps, logvar = self._draw(x, key, k)
        log_prior_over_q = jnp.sum(0.5 * (jnp.square(eps) - jnp.square(z)) + 0.5 * logvar, axis=-1)
        return self.log_likelihood(x, self.decode(z)), log_prior_over_q

    def log_weights(self, x: jax.Array, key: jax.Array, k: int) -> jax.Array:
        """log p(x, z) - log q(z|x) (k, N) for k codes per image drawn from `key`."""
        log_px_z, log_prior_over_q = self.log_weight_terms(x, key, k)
        return log_px_z + log_prior_over_q

    def reconstruct(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """Image means (N, H, W, C) in [0, 1] decoded from the posterior means."""
        return jax.nn.sigmoid(self.decode(self.encode(x, labels)[0], labels))

    def generate(self, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
        """n image means (n, H, W, C) in [0, 1] of codes z ~ N(0, I) drawn from `key` (for the
        labels (n,) where conditional)."""
        return jax.nn.sigmoid(self.decode(jax.random.normal(key, (n, self.latent), jnp.float32), labels))


class HierarchicalVAE(nn.Module):
    """Stochastic layers of `latents` units (bottom first), MLPs with `activation` between them:

    q(z|x) = q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), the net into layer l with widths `hidden[l]`;
    p(x, z) = p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2) p(x|z_1), p(z_L) = N(0, I), mirrored: the net
    out of layer l + 1 has widths `hidden[l]` reversed. Every conditional is a diagonal Gaussian
    (learned mean and log-variance) but p(x|z_1), the `likelihood`. The defaults are Burda et al.'s
    two-layer model: 784-200-200-(100)-100-100-(50) and back. See the module docstring for the
    interface; `__call__(x, key)` gives one log weight per image (N,).
    """

    image_shape: tuple[int, int, int]
    latents: Sequence[int] = (100, 50)
    hidden: Sequence[Sequence[int]] = ((200, 200), (100, 100))
    activation: str = "tanh"
    likelihood: str = "bernoulli"

    def setup(self):
        _check_options(self.activation, self.likelihood)
        if len(self.hidden) != len(self.latents) or not self.latents:
            raise ValueError(f"one hidden-width tuple per stochastic layer: got {self.hidden} for latents {self.latents}")
        widths = [tuple(w) for w in self.hidden]
        self.posteriors = [MLP(2 * units, w, self.activation) for units, w in zip(self.latents, widths)]
        self.priors = [MLP(2 * self.latents[i], widths[i + 1][::-1], self.activation) for i in range(len(self.latents) - 1)]
        self.decoder = MLP(math.prod(self.image_shape), widths[0][::-1], self.activation)
        if self.likelihood == "gaussian":
            self.log_scale = self.param("log_scale", nn.initializers.constant(INITIAL_LOG_SCALE), ())

    @property
    def latent(self) -> int:
        return self.latents[-1]

    def __call__(self, x: jax.Array, key: jax.Array) -> jax.Array:
        return self.log_weights(x, key, 1)[0]

    @staticmethod
    def _gaussian(net: nn.Module, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mu, raw = jnp.split(net(inputs), 2, axis=-1)
        return mu, bounded_logvar(raw)

    def _posterior_inputs(self, x: jax.Array, zs) -> list[jax.Array]:
        """The input of each layer's q: the flattened images (N, H*W*C), then z_1 ... z_{L-1}."""
        return [x.reshape(x.shape[0], -1), *zs[:-1]]

    def sample_posterior(self, x: jax.Array, key: jax.Array, k: int) -> tuple[tuple[jax.Array, ...], jax.Array]:
        """k draws per image from q(z|x), layer by layer with `split(key, L)`: (zs, log q(z|x) (k, N))."""
        inputs = x.reshape(x.shape[0], -1)
        zs, log_q = [], 0.0
        for net, layer_key in zip(self.posteriors, jax.random.split(key, len(self.latents))):
            mu, logvar = self._gaussian(net, inputs)
            eps = jax.random.normal(layer_key, (k, x.shape[0], mu.shape[-1]), mu.dtype)
            inputs = mu + jnp.exp(0.5 * logvar) * eps
            zs.append(inputs)
            log_q = log_q + jnp.sum(-0.5 * (jnp.square(eps) + logvar + LOG_2PI), axis=-1)
        return tuple(zs), log_q

    def log_posterior(self, x: jax.Array, zs: tuple[jax.Array, ...]) -> jax.Array:
        """log q(z|x) (k, N) of codes zs, one (k, N, units) array per layer."""
        terms = [gaussian_log_density(z, *self._gaussian(net, h)) for net, h, z in zip(self.posteriors, self._posterior_inputs(x, zs), zs)]
        return sum(terms[1:], terms[0])

    def log_joint(self, x: jax.Array, zs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        """(log p(x|z), log p(z)), each (k, N), of codes zs, one (k, N, units) array per layer."""
        log_pz = standard_normal_log_density(zs[-1])
        for net, z, above in zip(self.priors, zs[:-1], zs[1:]):
            log_pz = log_pz + gaussian_log_density(z, *self._gaussian(net, above))
        return self._log_likelihood(x, self._pixel_logits(zs[0])), log_pz

    def log_weight_terms(self, x: jax.Array, key: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        """(log p(x|z), log p(z) - log q(z|x)), each (k, N), for the codes of `sample_posterior`."""
        zs, log_q = self.sample_posterior(x, key, k)
        log_px_z, log_pz = self.log_joint(x, zs)
        return log_px_z, log_pz - log_q

    def log_weights(self, x: jax.Array, key: jax.Array, k: int) -> jax.Array:
        """log p(x, z) - log q(z|x) (k, N) for k draws per image from `key`."""
        log_px_z, log_prior_over_q = self.log_weight_terms(x, key, k)
        return log_px_z + log_prior_over_q

    def _pixel_logits(self, z1: jax.Array) -> jax.Array:
        return self.decoder(z1).reshape(*z1.shape[:-1], *self.image_shape)

    def _log_likelihood(self, x: jax.Array, logits: jax.Array) -> jax.Array:
        return _image_log_likelihood(self.likelihood, x, logits, getattr(self, "log_scale", None))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The top layer's q along the posterior means of the layers below: (mu, logvar) (N, latent)."""
        inputs = x.reshape(x.shape[0], -1)
        for net in self.posteriors:
            mu, logvar = self._gaussian(net, inputs)
            inputs = mu
        return mu, logvar

    def decode(self, z: jax.Array) -> jax.Array:
        """Top-layer codes (..., latent) -> pixel logits (..., H, W, C), through the prior means of
        the layers below."""
        for net in reversed(self.priors):
            z = self._gaussian(net, z)[0]
        return self._pixel_logits(z)

    def reconstruct(self, x: jax.Array) -> jax.Array:
        """Image means (N, H, W, C) in [0, 1] decoded from the bottom layer's posterior means."""
        mu, _ = self._gaussian(self.posteriors[0], x.reshape(x.shape[0], -1))
        return jax.nn.sigmoid(self._pixel_logits(mu))

    def generate(self, key: jax.Array, n: int) -> jax.Array:
        """n image means (n, H, W, C) in [0, 1] of ancestral samples: z_L ~ N(0, I), then each
        z_l ~ p(z_l|z_{l+1}), with `split(key, L)`."""
        keys = jax.random.split(key, len(self.latents))
        z = jax.random.normal(keys[-1], (n, self.latent), jnp.float32)
        for net, layer_key in zip(reversed(self.priors), keys[-2::-1]):
            z = reparameterize(layer_key, *self._gaussian(net, z))
        return jax.nn.sigmoid(self._pixel_logits(z))


def iwae_paper_model(
    image_shape: tuple[int, int, int], stochastic_layers: int = 1, hidden=None, likelihood: str = "bernoulli"
) -> nn.Module:
    """Burda et al.'s tanh architecture with 1 (`VAE`) or 2 (`HierarchicalVAE`) stochastic layers;
    `hidden` replaces its deterministic widths: a tuple of widths for 1 layer, e.g. (200, 200),
    one such tuple per layer for 2, e.g. ((200, 200), (100, 100))."""
    if stochastic_layers not in IWAE_PAPER:
        raise ValueError(f"the IWAE paper's architecture has 1 or 2 stochastic layers, not {stochastic_layers}")
    recipe = dict(IWAE_PAPER[stochastic_layers], activation="tanh", likelihood=likelihood)
    if hidden is not None:
        recipe["hidden"] = tuple(hidden) if stochastic_layers == 1 else tuple(tuple(w) for w in hidden)
    if stochastic_layers == 1:
        return VAE(image_shape, **recipe)
    return HierarchicalVAE(image_shape, **recipe)


def sample(params, model: nn.Module, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """n images from the model's prior (`generate`; for the labels (n,) of a conditional VAE):
    means (n, H, W, C) float32 in [0, 1].

    For the Bernoulli likelihood these are the pixel probabilities (Bernoulli means).
    """
    if labels is None:
        return model.apply({"params": params}, key, n, method="generate")
    return model.apply({"params": params}, key, n, labels, method="generate")
