"""Autoencoders for images of any size: MLP and convolutional encoders and decoders.

Encoders map float images (N, H, W, C) in [0, 1] to codes (N, code_size); decoders map codes to
pixel logits (N, H, W, C), float32 (apply a sigmoid for images in [0, 1]). The convolutional ones
work on a grid of `cell` x `cell` pixel cells, so H and W must be multiples of the cell (4). Each
half is a module of its own, usable alone; `Autoencoder` chains them.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import linen as nn

from jaxae.models.layers import PatchConv, depth_to_space, space_to_depth

CELL = 4  # pixels per side of the convolutional models' grid cells


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

    image_shape: tuple[int, int, int]
    hidden: Sequence[int] = (256, 512)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        for width in self.hidden:
            z = nn.relu(nn.Dense(width)(z))
        size = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        return nn.Dense(size)(z).reshape(z.shape[0], *self.image_shape)


class ConvEncoder(nn.Module):
    """(N, H, W, C) -> (N, outputs): space-to-depth to an H/4 x W/4 grid of 4x4 cells, 3x3 convs, then dense.

    The convs run on the coarse grid as matmuls (`PatchConv`): the same receptive field as
    stride-2 convs at full resolution for a fraction of the FLOPs, and fast on XLA:CPU.
    """

    outputs: int
    cell: int = CELL
    features: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = space_to_depth(x, self.cell)
        for width in self.features:
            x = nn.relu(PatchConv(width)(x))
        return nn.Dense(self.outputs)(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
    """(N, code) -> logits (N, H, W, C): dense to an H/4 x W/4 grid, 3x3 convs, then depth-to-space
    (a sub-pixel convolution with cell^2 * C outputs per grid position)."""

    image_shape: tuple[int, int, int]
    cell: int = CELL
    features: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        rows, columns = self.image_shape[0] // self.cell, self.image_shape[1] // self.cell
        x = nn.relu(nn.Dense(rows * columns * self.features[0])(z))
        x = x.reshape(z.shape[0], rows, columns, self.features[0])
        for width in self.features:
            x = nn.relu(PatchConv(width)(x))
        return depth_to_space(PatchConv(self.cell * self.cell * self.image_shape[-1])(x), self.cell)


class Autoencoder(nn.Module):
    """Encoder then decoder: images (N, H, W, C) in [0, 1] -> pixel logits of the same shape."""

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encoder(x))

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)


def autoencoder(arch: str, code_size: int, image_shape: tuple[int, int, int]) -> Autoencoder:
    """The default MLP ("mlp") or convolutional ("conv") autoencoder with a code of `code_size`
    for images of `image_shape` (H, W, C)."""
    if arch == "mlp":
        return Autoencoder(MLPEncoder(code_size), MLPDecoder(image_shape))
    if arch == "conv":
        return Autoencoder(ConvEncoder(code_size), ConvDecoder(image_shape))
    raise ValueError(f"unknown architecture {arch!r}: use mlp or conv")
