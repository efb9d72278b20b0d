"""Autoencoders for 28x28x1 images: MLP and convolutional encoders and decoders.

Encoders map float images (N, 28, 28, 1) in [0, 1] to codes (N, code_size); decoders map codes
to pixel logits (N, 28, 28, 1), float32 (apply a sigmoid for images in [0, 1]). Each half is a
module of its own, usable alone; `Autoencoder` chains them.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import linen as nn

from jaxae.models.layers import PatchConv, depth_to_space, space_to_depth

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
    """(N, 28, 28, C) -> (N, outputs): space-to-depth to a 7x7 grid of 4x4 cells, 3x3 convs, then dense.

    The convs run on the coarse grid as matmuls (`PatchConv`): the same receptive field as
    stride-2 convs at full resolution for a fraction of the FLOPs, and fast on XLA:CPU.
    """

    outputs: int
    cell: int = 4
    features: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = space_to_depth(x, self.cell)
        for width in self.features:
            x = nn.relu(PatchConv(width)(x))
        return nn.Dense(self.outputs)(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
    """(N, code) -> logits (N, 28, 28, C): dense to a 7x7 grid, 3x3 convs, then depth-to-space
    (a sub-pixel convolution with cell^2 * C outputs per grid position)."""

    cell: int = 4
    features: Sequence[int] = (64, 64)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        side = self.image_shape[0] // self.cell
        x = nn.relu(nn.Dense(side * side * self.features[0])(z))
        x = x.reshape(z.shape[0], side, side, self.features[0])
        for width in self.features:
            x = nn.relu(PatchConv(width)(x))
        return depth_to_space(PatchConv(self.cell * self.cell * self.image_shape[-1])(x), self.cell)


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

