"""GAN generators and discriminators for images of any size (the DCGAN's H and W multiples of 4).

Generators map gaussian latents (N, latent) float32 to images (N, H, W, C) float32 in [0, 1]
(a sigmoid output, the same scale as the real images). Discriminators map images in [0, 1] to one
logit per image, (N,) float32 (positive: "real").

With `num_classes` set, each network also takes int32 labels (N,): a generator appends their
one-hot code to its latents, and a discriminator adds a projection term <embed(label), h> to its
logit, h being its last hidden features (Miyato & Koyama 2018).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxae.models.autoencoder import MLPDecoder
from jaxae.models.layers import ConvTranspose2x, GroupNorm

LEAK = 0.2  # leaky-ReLU slope of the discriminators


class DCGANGenerator(nn.Module):
    """(N, latent) -> images (N, H, W, C): dense to H/4 x W/4 x 128, stride-2 transposed convs up to H x W.

    Hidden layers: GroupNorm (per image, so the step stays a pure function of its batch) then
    leaky ReLU. Without the normalization the generator collapsed to blank images within an
    epoch on MNIST (the discriminator won outright); with it, it learns digits.
    `stock_transpose` uses `nn.ConvTranspose` instead of `ConvTranspose2x` (a matmul and shifted adds)
    (same parameters and outputs; several times slower to train on XLA:CPU), for comparisons.
    """

    image_shape: tuple[int, int, int]
    features: Sequence[int] = (128, 64)
    kernel_size: tuple[int, int] = (4, 4)
    groups: int = 32
    stock_transpose: bool = False
    num_classes: int | None = None

    def _upsample(self, features: int, name: str) -> nn.Module:
        if self.stock_transpose:
            return nn.ConvTranspose(features, self.kernel_size, strides=(2, 2), padding="SAME", name=name)
        return ConvTranspose2x(features, self.kernel_size, name=name)

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        z = with_one_hot(z, labels, self.num_classes)
        rows, columns = (size // 2 ** len(self.features) for size in self.image_shape[:2])
        x = nn.Dense(rows * columns * self.features[0])(z).reshape(z.shape[0], rows, columns, self.features[0])
        for i, width in enumerate(self.features[1:]):
            x = self._upsample(width, f"Upsample_{i}")(self._activate(x))
        return nn.sigmoid(self._upsample(self.image_shape[-1], f"Upsample_{len(self.features) - 1}")(self._activate(x)))

    def _activate(self, x: jax.Array) -> jax.Array:
        return nn.leaky_relu(GroupNorm(self.groups)(x), LEAK)


class DCGANDiscriminator(nn.Module):
    """Images (N, H, W, C) -> logits (N,): stride-2 convs with leaky ReLU, then one dense unit."""

    features: Sequence[int] = (64, 128)
    kernel_size: tuple[int, int] = (4, 4)
    num_classes: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        for width in self.features:
            x = nn.leaky_relu(nn.Conv(width, self.kernel_size, strides=(2, 2))(x), LEAK)
        return projection_logit(x.reshape(x.shape[0], -1), labels, self.num_classes)


class MLPGenerator(nn.Module):
    """(N, latent) -> images (N, H, W, C): an MLP decoder with a sigmoid output."""

    image_shape: tuple[int, int, int]
    hidden: Sequence[int] = (256, 512)
    num_classes: int | None = None

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return nn.sigmoid(MLPDecoder(self.image_shape, self.hidden)(with_one_hot(z, labels, self.num_classes)))


class MLPDiscriminator(nn.Module):
    """Images (N, H, W, C) -> logits (N,): dense layers with leaky ReLU, then one dense unit."""

    hidden: Sequence[int] = (512, 256)
    num_classes: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), LEAK)
        return projection_logit(x, labels, self.num_classes)


def with_one_hot(z: jax.Array, labels: jax.Array | None, num_classes: int | None) -> jax.Array:
    """z (N, d) with the labels' one-hot code appended, (N, d + num_classes); z itself when unconditional."""
    if num_classes is None:
        return z
    return jnp.concatenate([z, jax.nn.one_hot(labels, num_classes, dtype=z.dtype)], axis=-1)


def projection_logit(h: jax.Array, labels: jax.Array | None, num_classes: int | None) -> jax.Array:
    """One logit per row of features h (N, d): a dense unit, plus <embed(label), h> when conditional."""
    logit = nn.Dense(1)(h)[:, 0]
    if num_classes is None:
        return logit
    return logit + jnp.sum(nn.Embed(num_classes, h.shape[-1], name="class_embedding")(labels) * h, axis=-1)


def gan(arch: str, image_shape: tuple[int, int, int], num_classes: int | None = None) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for images of `image_shape`: the DCGAN ("conv") or the MLP GAN
    ("mlp"), conditional on labels of `num_classes` classes where that is set."""
    if arch == "conv":
        return DCGANGenerator(image_shape, num_classes=num_classes), DCGANDiscriminator(num_classes=num_classes)
    if arch == "mlp":
        return MLPGenerator(image_shape, num_classes=num_classes), MLPDiscriminator(num_classes=num_classes)
    raise ValueError(f"unknown architecture {arch!r}: use mlp or conv")
