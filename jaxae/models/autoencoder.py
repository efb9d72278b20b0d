"""Autoencoders for 28x28x1 images: MLP and convolutional encoders and decoders.

Encoders map float images (N, 28, 28, 1) in [0, 1] to codes (N, code_size); decoders map codes
to pixel logits (N, 28, 28, 1), float32 (apply a sigmoid for images in [0, 1]). Each half is a
module of its own, usable alone; `Autoencoder` chains them.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxae.models.layers import ConvTranspose2x

IMAGE_SHAPE = (28, 28, 1)


class MLPEncoder(nn.Module):
    """(N, H, W, C) -> (N, outputs): dense layers with ReLU, a linear last layer."""

    outputs: int
    hidden: Sequence[int] = (512, 256)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.outputs)(x)


class MLPDecoder(nn.Module):
    """(N, code) -> logits (N, *image_shape): dense layers with ReLU, a linear last layer."""

    hidden: Sequence[int] = (256, 512)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        for width in self.hidden:
            z = nn.relu(nn.Dense(width)(z))
        size = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        return nn.Dense(size)(z).reshape(z.shape[0], *self.image_shape)


class ConvEncoder(nn.Module):
    """(N, 28, 28, C) -> (N, outputs): 3x3 convs, each stride-2 stage halving the size, then dense."""

    outputs: int
    features: Sequence[int] = (32, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.features:
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2))(x))
        return nn.Dense(self.outputs)(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
    """(N, code) -> logits (N, 28, 28, 1): dense to 7x7, stride-2 transposed convs up to 28x28."""

    features: Sequence[int] = (64, 32)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        side = self.image_shape[0] // 2 ** len(self.features)
        x = nn.relu(nn.Dense(side * side * self.features[0])(z))
        x = x.reshape(z.shape[0], side, side, self.features[0])
        for width in self.features:
            x = nn.relu(ConvTranspose2x(width)(x))
            x = nn.relu(nn.Conv(width, (3, 3))(x))
        return nn.Conv(self.image_shape[-1], (3, 3))(x)


class Autoencoder(nn.Module):
    """Encoder then decoder: images (N, 28, 28, 1) in [0, 1] -> pixel logits of the same shape."""

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encoder(x))

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)


def autoencoder(arch: str, code_size: int) -> Autoencoder:
    """The default MLP ("mlp") or convolutional ("conv") autoencoder with a code of `code_size`."""
    if arch == "mlp":
        return Autoencoder(MLPEncoder(code_size), MLPDecoder())
    if arch == "conv":
        return Autoencoder(ConvEncoder(code_size), ConvDecoder())
    raise ValueError(f"unknown architecture {arch!r}: use mlp or conv")

