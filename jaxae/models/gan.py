"""GAN generators and discriminators for 28x28x1 images.

Generators map gaussian latents (N, latent) float32 to images (N, 28, 28, 1) float32 in [0, 1]
(a sigmoid output, the same scale as the real images). Discriminators map images in [0, 1] to one
logit per image, (N,) float32 (positive: "real").
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import linen as nn

from jaxae.models.autoencoder import IMAGE_SHAPE, MLPDecoder
from jaxae.models.layers import ConvTranspose2x, GroupNorm

LEAK = 0.2  # leaky-ReLU slope of the discriminators


class DCGANGenerator(nn.Module):
    """(N, latent) -> images (N, 28, 28, 1): dense to 7x7x128, stride-2 transposed convs up to 28x28.

    Hidden layers: GroupNorm (per image, so the step stays a pure function of its batch) then
    leaky ReLU. Without the normalization the generator collapsed to blank images within an
    epoch on MNIST (the discriminator won outright); with it, it learns digits.
    `stock_transpose` uses `nn.ConvTranspose` instead of `ConvTranspose2x` (a matmul and shifted adds)
    (same parameters and outputs; several times slower to train on XLA:CPU), for comparisons.
    """

    features: Sequence[int] = (128, 64)
    kernel_size: tuple[int, int] = (4, 4)
    groups: int = 32
    stock_transpose: bool = False
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    def _upsample(self, features: int, name: str) -> nn.Module:
        if self.stock_transpose:
            return nn.ConvTranspose(features, self.kernel_size, strides=(2, 2), padding="SAME", name=name)
        return ConvTranspose2x(features, self.kernel_size, name=name)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        side = self.image_shape[0] // 2 ** len(self.features)
        x = nn.Dense(side * side * self.features[0])(z).reshape(z.shape[0], side, side, self.features[0])
        for i, width in enumerate(self.features[1:]):
            x = self._upsample(width, f"Upsample_{i}")(self._activate(x))
        return nn.sigmoid(self._upsample(self.image_shape[-1], f"Upsample_{len(self.features) - 1}")(self._activate(x)))

    def _activate(self, x: jax.Array) -> jax.Array:
        return nn.leaky_relu(GroupNorm(self.groups)(x), LEAK)


class DCGANDiscriminator(nn.Module):
    """Images (N, 28, 28, C) -> logits (N,): stride-2 convs with leaky ReLU, then one dense unit."""

    features: Sequence[int] = (64, 128)
    kernel_size: tuple[int, int] = (4, 4)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.features:
            x = nn.leaky_relu(nn.Conv(width, self.kernel_size, strides=(2, 2))(x), LEAK)
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


class MLPGenerator(nn.Module):
    """(N, latent) -> images (N, 28, 28, 1): an MLP decoder with a sigmoid output."""

    hidden: Sequence[int] = (256, 512)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        return nn.sigmoid(MLPDecoder(self.hidden)(z))


class MLPDiscriminator(nn.Module):
    """Images (N, H, W, C) -> logits (N,): dense layers with leaky ReLU, then one dense unit."""

    hidden: Sequence[int] = (512, 256)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), LEAK)
        return nn.Dense(1)(x)[:, 0]


def gan(arch: str) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator): the DCGAN ("conv") or the MLP GAN ("mlp")."""
    if arch == "conv":
        return DCGANGenerator(), DCGANDiscriminator()
    if arch == "mlp":
        return MLPGenerator(), MLPDiscriminator()
    raise ValueError(f"unknown architecture {arch!r}: use mlp or conv")
