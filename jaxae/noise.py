"""Pure, keyed image corruptions.

Every function takes float images in [0, 1] of any shape (typically (N, H, W, C) float32), keeps
shape and dtype, clips to [0, 1], and works under jit, vmap and pmap. The same key gives the same
noise. `downsample` / `upsample` change the spatial size and are deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp


def gaussian(key: jax.Array, x: jax.Array, sigma: float) -> jax.Array:
    """Adds N(0, sigma^2) noise to every pixel, then clips to [0, 1]."""
    noise = sigma * jax.random.normal(key, x.shape, x.dtype)
    return jnp.clip(x + noise, 0.0, 1.0)


def mask(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Sets each pixel to 0 (missing) with probability `rate`."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x, jnp.zeros_like(x))


def salt_and_pepper(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Replaces each pixel with probability `rate` by 0 or 1 (each with probability 1/2)."""
    hit_key, salt_key = jax.random.split(key)
    hit = jax.random.bernoulli(hit_key, rate, x.shape)
    salt = jax.random.bernoulli(salt_key, 0.5, x.shape).astype(x.dtype)
    return jnp.where(hit, salt, x)


def downsample(x: jax.Array, factor: int) -> jax.Array:
    """Box-filter (area) downsampling: (..., H, W, C) -> (..., H/factor, W/factor, C)."""
    *lead, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not divisible by the factor {factor}")
    blocks = x.reshape(*lead, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(-4, -2))


def upsample(x: jax.Array, factor: int, method: str = "bicubic") -> jax.Array:
    """Brings (..., l, l, C) back to (..., l*factor, l*factor, C) by interpolation, clipped to [0, 1].

    `method` is any `jax.image.resize` method: "nearest", "bilinear", "bicubic", "lanczos3".
    """
    *lead, h, w, c = x.shape
    out = jax.image.resize(x, (*lead, h * factor, w * factor, c), method=method)
    return jnp.clip(out, 0.0, 1.0).astype(x.dtype)


NOISES: dict[str, Callable[[jax.Array, jax.Array, float], jax.Array]] = {
    "gaussian": gaussian,
    "mask": mask,
    "salt_and_pepper": salt_and_pepper,
}


@dataclasses.dataclass(frozen=True)
class Noise:
    """A named noise model with its level, e.g. Noise("gaussian", 0.2); parse with `Noise.parse`."""

    kind: str
    level: float

    def __post_init__(self):
        if self.kind not in NOISES:
            raise ValueError(f"unknown noise {self.kind!r}: use one of {', '.join(NOISES)}")
        if not (0.0 <= self.level <= 1.0 or (self.kind == "gaussian" and math.isfinite(self.level) and self.level > 0)):
            allowed = "a finite sigma >= 0" if self.kind == "gaussian" else "a rate in [0, 1]"
            raise ValueError(f"noise level {self.level} is out of range for {self.kind}: use {allowed}")

    @classmethod
    def parse(cls, spec: str) -> "Noise":
        """Parses "gaussian:0.2", "mask:0.3" or "salt_and_pepper:0.1"."""
        if not isinstance(spec, str):
            raise ValueError(f"bad noise {spec!r}: write KIND:LEVEL, e.g. gaussian:0.2")
        kind, _, level = spec.partition(":")
        try:
            value = float(level)
        except ValueError:
            raise ValueError(f"bad noise {spec!r}: write KIND:LEVEL, e.g. gaussian:0.2") from None
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}"

    def __call__(self, key: jax.Array, x: jax.Array) -> jax.Array:
        return NOISES[self.kind](key, x, self.level)
