"""A small convolutional classifier for images of any size, whose penultimate layer is the feature
network of the FID (see jaxae.features).
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import linen as nn


class Classifier(nn.Module):
    """Images (N, H, W, C) float32 in [0, 1] -> class logits (N, classes).

    Stride-2 3x3 convs with ReLU (28 -> 14 -> 7 for MNIST), then a dense ReLU layer of `embedding` units:
    `embed` returns those penultimate activations (N, embedding), the FID features. Strided convs
    rather than max-pooling: on XLA:CPU the pooled version trains about 9x slower.
    """

    features: Sequence[int] = (32, 64)
    embedding: int = 128
    classes: int = 10

    def setup(self):
        self.convs = [nn.Conv(width, (3, 3), strides=(2, 2)) for width in self.features]
        self.hidden = nn.Dense(self.embedding)
        self.head = nn.Dense(self.classes)

    def embed(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nn.relu(conv(x))
        return nn.relu(self.hidden(x.reshape(x.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.embed(x))

    @property
    def name_tag(self) -> str:
        """Names the architecture, e.g. "conv32s2-64s2-dense128" (part of the feature cache key)."""
        return "conv" + "-".join(f"{width}s2" for width in self.features) + f"-dense{self.embedding}"
