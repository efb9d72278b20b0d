"""Objectives: `objective(params, apply_fn, batch, key) -> (loss, metrics)`.

`batch` holds uint8 images (N, H, W, C) as stored by `jaxae.data`; objectives turn them into
float32 in [0, 1]. `key` is the step's key: every corruption or sample is drawn from it. Metrics
are scalars averaged over the batch, so that averaging equal-size batches gives dataset means.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxae import losses, metrics

Objective = Callable[[Any, Callable, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
Corruption = Callable[[jax.Array, jax.Array], jax.Array]


def to_float(images: jax.Array) -> jax.Array:
    """uint8 images -> float32 in [0, 1]; float images pass through."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def no_corruption(key: jax.Array, x: jax.Array) -> jax.Array:
    """The identity corruption: a plain (compressing) autoencoder."""
    del key
    return x


def reconstruction(corrupt: Corruption = no_corruption, loss: str = "mse") -> Objective:
    """Restore clean images from `corrupt(key, clean)`: AE (identity), DAE (noise), SR (blur).

    The model maps the corrupted images to pixel logits. `loss` is "mse" (on sigmoid outputs,
    per-pixel mean) or "bce" (Bernoulli cross-entropy with grey-level targets, per-pixel mean).
    Metrics: `loss`, `mse` (per pixel), `psnr` (dB, per image then averaged).
    """
    if loss not in ("mse", "bce"):
        raise ValueError(f"unknown reconstruction loss {loss!r}: use mse or bce")

    def objective(params, apply_fn, batch, key):
        clean = to_float(batch)
        logits = apply_fn({"params": params}, corrupt(key, clean))
        restored = jax.nn.sigmoid(logits)
        mse = jnp.mean(losses.mse(restored, clean))
        value = mse if loss == "mse" else jnp.mean(losses.bce_with_logits(logits, clean))
        return value, {"loss": value, "mse": mse, "psnr": jnp.mean(metrics.psnr(restored, clean))}

    return objective
