"""Objectives: `objective(params, apply_fn, batch, key) -> (loss, metrics)`.

`batch` is a dict {"image": uint8 (N, H, W, C), "label": int32 (N,)} ("label" only where the data
has labels) as `jaxae.data` gathers it; objectives read what they need and turn images into
float32 in [0, 1]. `key` is the step's key: every corruption or sample is drawn from it. Metrics
are scalars averaged over the batch, so that averaging equal-size batches gives dataset means.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxae import losses, metrics

Batch = dict[str, jax.Array]
Objective = Callable[[Any, Callable, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
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
        clean = to_float(batch["image"])
        logits = apply_fn({"params": params}, corrupt(key, clean))
        restored = jax.nn.sigmoid(logits)
        mse = jnp.mean(losses.mse(restored, clean))
        value = mse if loss == "mse" else jnp.mean(losses.bce_with_logits(logits, clean))
        return value, {"loss": value, "mse": mse, "psnr": jnp.mean(metrics.psnr(restored, clean))}

    return objective


def binarize(key: jax.Array, x: jax.Array) -> jax.Array:
    """A fresh Bernoulli draw per pixel of (N, ...) float images x in [0, 1]: float32 {0, 1} images
    of the same shape, P(1) = x to within 2^-16 (exactly 0 and 1 where x is 0 and 1).

    Each pixel compares 16 random bits with x, and each 32-bit random word serves two pixels: half
    the hashing of `jax.random.bernoulli` (a word per pixel), which makes the VAE's train step about
    1.06x faster on the CPU.
    """
    flat = x.reshape(x.shape[0], -1)
    pixels = flat.shape[1]
    words = jax.random.bits(key, (x.shape[0], (pixels + 1) // 2), jnp.uint32)
    uniform16 = jnp.concatenate([words >> 16, words & 0xFFFF], axis=1)[:, :pixels]
    return (uniform16.astype(jnp.float32) < flat * 65536.0).astype(jnp.float32).reshape(x.shape)


def vae(beta: float = 1.0, dynamic_binarization: bool = True) -> Objective:
    """Negative ELBO of a `jaxae.models.vae.VAE`, one code z per image from the step key.

    The key splits into a binarization key (a fresh Bernoulli draw of the batch when
    `dynamic_binarization`) and the eps key of the reparameterization. Per image, summed over
    pixels and latent units (nats per image), then averaged over the batch:
    `recon` = -log p(x|z), `kl` = KL(q(z|x) || N(0, I)) in closed form, `neg_elbo` = recon + kl,
    and the optimized `loss` = recon + beta * kl (beta-VAE; equal to neg_elbo for beta = 1).
    """

    def objective(params, apply_fn, batch, key):
        data_key, eps_key = jax.random.split(key)
        x = to_float(batch["image"])
        if dynamic_binarization:
            x = binarize(data_key, x)
        variables = {"params": params}
        logits, mu, logvar = apply_fn(variables, x, eps_key)
        recon = -apply_fn(variables, x, logits, method="log_likelihood")
        kl = jnp.sum(losses.kl_diag_gaussian(mu, logvar), axis=-1)
        recon, kl = jnp.mean(recon), jnp.mean(kl)
        return recon + beta * kl, {"loss": recon + beta * kl, "neg_elbo": recon + kl, "recon": recon, "kl": kl}

    return objective


def classification() -> Objective:
    """Softmax cross-entropy of class logits against the batch's labels, nats per image averaged
    over the batch. Metrics: `loss`, `accuracy` (share of images whose top logit is the label)."""

    def objective(params, apply_fn, batch, key):
        del key
        logits = apply_fn({"params": params}, to_float(batch["image"]))
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))
        return loss, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == batch["label"])}

    return objective
