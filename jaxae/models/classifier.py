"""A small classifier for images of any size, whose penultimate layer is the feature network of
the FID (see jaxae.features): convolutional (the default) or an MLP (cheaper, for quick budgets).
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import linen as nn


class Classifier(nn.Module):
    """Images (N, H, W, C) float32 in [0, 1] -> class logits (N, classes).

    arch "conv": stride-2 3x3 convs of `features` channels with ReLU (28 -> 14 -> 7 for MNIST),
    then a dense ReLU layer of `embedding` units. Strided convs rather than max-pooling: on XLA:CPU
    the pooled version trains about 9x slower. arch "mlp": dense ReLU layers of `features` units,
    then the `embedding` layer. `embed` returns those penultimate activations (N, embedding), the
    FID features.
    """

    features: Sequence[int] = (32, 64)
    embedding: int = 128
    classes: int = 10
    arch: str = "conv"

    def setup(self):
        if self.arch == "conv":
            self.convs = [nn.Conv(width, (3, 3), strides=(2, 2)) for width in self.features]
        elif self.arch == "mlp":
            self.dense = [nn.Dense(width) for width in self.features]
        else:
            raise ValueError(f"unknown classifier architecture {self.arch!r}: use conv or mlp")
        self.hidden = nn.Dense(self.embedding)
        self.head = nn.Dense(self.classes)

    def embed(self, x: jax.Array) -> jax.Array:
        if self.arch == "mlp":
            x = x.reshape(x.shape[0], -1)
        for layer in self.convs if self.arch == "conv" else self.dense:
            x = nn.relu(layer(x))
        return nn.relu(self.hidden(x.reshape(x.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.embed(x))

    @property
    def name_tag(self) -> str:
        """Names the architecture, e.g. "conv32s2-64s2-dense128" or "mlp256-dense128" (part of the
        feature cache key)."""
        if self.arch == "mlp":
            return "mlp" + "-".join(str(width) for width in self.features) + f"-dense{self.embedding}"
        return "conv" + "-".join(f"{width}s2" for width in self.features) + f"-dense{self.embedding}"
