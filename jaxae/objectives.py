"""Objectives: `objective(params, apply_fn, batch, key) -> (loss, metrics)`.

`batch` is a dict {"image": uint8 (N, H, W, C), "label": int32 (N,)} ("label" only where the data
has labels) as `jaxae.data` gathers it; objectives read what they need and turn images into
float32 in [0, 1]. `key` is the step's key: every corruption or sample is drawn from it. Metrics
are scalars averaged over the batch, so that averaging equal-size batches gives dataset means.
The VAE objectives also take an optional keyword `step` (the train state's step, for the warm-up
of the latent term; without it, as in evaluation, the warm-up is over).
"""

from __future__ import annotations

import math
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


def kl_weight(step: jax.Array | None, beta: float = 1.0, warmup_steps: int = 0):
    """The weight of a VAE's latent term at train step `step` (the number of updates made
    before it): beta * min(1, step / warmup_steps), a linear warm-up from 0; beta itself when
    `warmup_steps` is 0 or `step` is None (evaluation)."""
    if warmup_steps == 0 or step is None:
        return beta
    return beta * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def _vae_inputs(batch, key: jax.Array, dynamic_binarization: bool) -> tuple[jax.Array, jax.Array]:
    """(float images of the batch, freshly binarized when asked, the eps key): the step key
    splits into a binarization key and the key of the codes."""
    data_key, eps_key = jax.random.split(key)
    x = to_float(batch["image"])
    if dynamic_binarization:
        x = binarize(data_key, x)
    return x, eps_key


def vae(beta: float = 1.0, dynamic_binarization: bool = True, warmup_steps: int = 0, conditional: bool = False) -> Objective:
    """Negative ELBO of a `jaxae.models.vae.VAE`, one code z per image from the step key, with
    the KL in closed form.

    The key splits into a binarization key (a fresh Bernoulli draw of the batch when
    `dynamic_binarization`) and the eps key of the reparameterization. Per image, summed over
    pixels and latent units (nats per image), then averaged over the batch:
    `recon` = -log p(x|z), `kl` = KL(q(z|x) || N(0, I)), `neg_elbo` = recon + kl, and the
    optimized `loss` = recon + kl_weight(step, beta, warmup_steps) * kl (beta-VAE and KL warm-up;
    equal to neg_elbo for beta = 1 after the warm-up). The objective takes an optional keyword
    `step` (the train state's step); without it the weight is beta. A `conditional` VAE gets the
    batch's labels too.
    """

    def objective(params, apply_fn, batch, key, step=None):
        x, eps_key = _vae_inputs(batch, key, dynamic_binarization)
        variables = {"params": params}
        labels = (batch["label"],) if conditional else ()
        logits, mu, logvar = apply_fn(variables, x, eps_key, *labels)
        recon = -apply_fn(variables, x, logits, method="log_likelihood")
        kl = jnp.sum(losses.kl_diag_gaussian(mu, logvar), axis=-1)
        recon, kl = jnp.mean(recon), jnp.mean(kl)
        loss = recon + kl_weight(step, beta, warmup_steps) * kl
        return loss, {"loss": loss, "neg_elbo": recon + kl, "recon": recon, "kl": kl}

    return objective


GRADIENTS = ("standard", "dreg")
BOUNDS = ("iwae", "elbo")


def iwae(
    k: int = 1,
    gradient: str = "standard",
    beta: float = 1.0,
    warmup_steps: int = 0,
    dynamic_binarization: bool = True,
    bound: str = "iwae",
) -> Objective:
    """Negative importance-weighted bound (Burda et al. 2016) of a model with the interface of
    `jaxae.models.vae` (`VAE` or `HierarchicalVAE`), with k codes per image from the step key.

    With z_1 ... z_k ~ q(z|x) and a = kl_weight(step, beta, warmup_steps) (see `vae`), the log
    weights are log w_i = log p(x|z_i) + a (log p(z_i) - log q(z_i|x)) and the `loss` is
    -(logsumexp_i log w_i - log k), nats per image, averaged over the batch; with `bound="elbo"`
    it is -mean_i log w_i instead, the ELBO averaged over the k codes (the IWAE paper's VAE trained
    with k samples; the same number as the bound at k = 1). The key is used as
    in `vae`: with the same key and k = 1 the codes and `recon` are `vae`'s, and `kl` is a
    one-sample estimate of its closed form. Metrics, nats per image at a = 1: `neg_iwae` (the
    k-sample bound), `neg_elbo` (-log w_i averaged over the k codes: the one-sample negative
    ELBO), `recon` (-log p(x|z)), `kl` (log q(z|x) - log p(z)). At k = 1 and a = 1, loss,
    neg_iwae and neg_elbo are the same number exactly.

    `gradient`: "standard" differentiates the bound through the reparameterized codes; "dreg" is
    Tucker et al.'s (2019) doubly reparameterized gradient, unbiased, whose encoder gradient
    keeps its signal-to-noise ratio as k grows: the decoder's gradient is the standard one, the
    encoder's is
    sum_i ((1 - a) w~_i + a w~_i^2) d log w_i / d z_i  dz_i / dphi (w~ the normalized weights,
    q's parameters held fixed inside log w_i; at a = 1 the w~^2 of the paper), at the cost of a
    second forward pass of q's networks (on the images, and on the k codes of the layers below
    for a `HierarchicalVAE`) to evaluate q's densities at the codes.
    """
    if k < 1:
        raise ValueError(f"iwae: k must be at least 1, got {k}")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}: use {' or '.join(GRADIENTS)}")
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}: use {' or '.join(BOUNDS)}")
    if bound == "elbo" and gradient == "dreg" and k > 1:
        raise ValueError("dreg is the importance-weighted bound's gradient: use gradient='standard' for the k-sample elbo")
    log_k = math.log(k)

    def iwae_bound(log_w):
        """(k, N) log weights -> (N,) log-mean-exp over the k codes."""
        return jax.nn.logsumexp(log_w, axis=0) - log_k

    def elbo_bound(log_w):
        """(k, N) log weights -> (N,) mean over the k codes."""
        return jnp.mean(log_w, axis=0)

    trained_bound = iwae_bound if bound == "iwae" else elbo_bound

    def objective(params, apply_fn, batch, key, step=None):
        x, eps_key = _vae_inputs(batch, key, dynamic_binarization)
        weight = kl_weight(step, beta, warmup_steps)
        if gradient == "standard":
            log_px_z, log_ratio = apply_fn({"params": params}, x, eps_key, k, method="log_weight_terms")
        else:
            zs, _ = apply_fn({"params": params}, x, eps_key, k, method="sample_posterior")
            log_px_z, log_ratio = dreg_log_weight_terms(apply_fn)(params, zs, x, jnp.asarray(weight, jnp.float32))
        log_w = log_px_z + log_ratio
        loss = -jnp.mean(trained_bound(log_px_z + weight * log_ratio))
        recon, kl = -jnp.mean(log_px_z), -jnp.mean(log_ratio)
        return loss, {
            "loss": loss,
            "neg_iwae": -jnp.mean(iwae_bound(log_w)),
            "neg_elbo": -jnp.mean(elbo_bound(log_w)),
            "recon": recon,
            "kl": kl,
        }

    return objective


def dreg_log_weight_terms(apply_fn: Callable):
    """`terms(params, zs, x, weight) -> (log p(x|z), log p(z) - log q(z|x))`, each (k, N), of codes
    zs drawn from q(z|x) (`sample_posterior`), with q's parameters held fixed in log q and a
    backward pass for the IWAE loss of `iwae` at KL weight `weight` (a float32 scalar).

    The backward pass pulls the cotangents back once (one forward and one backward pass in all)
    and scales the cotangent that reaches the codes z_i of each image by
    (1 - weight) + weight * w~_i, the normalized weights w~ = softmax_i(log w_i) computed in the
    forward pass: the loss's cotangent on log w_i is -w~_i / N, so the encoder receives the DReG
    weights (1 - weight) w~_i + weight w~_i^2, the decoder the plain ones.
    """

    def terms(params, zs, x):
        log_px_z, log_pz = apply_fn({"params": params}, x, zs, method="log_joint")
        log_q = apply_fn({"params": jax.lax.stop_gradient(params)}, x, zs, method="log_posterior")
        return log_px_z, log_pz - log_q

    @jax.custom_vjp
    def dreg_terms(params, zs, x, weight):
        return terms(params, zs, x)

    def forward(params, zs, x, weight):
        (log_px_z, log_ratio), pull_back = jax.vjp(lambda p, z: terms(p, z, x), params, zs)
        normalized = jax.nn.softmax(log_px_z + weight * log_ratio, axis=0)
        return (log_px_z, log_ratio), (pull_back, (1.0 - weight) + weight * normalized, x, weight)

    def backward(residuals, cotangents):
        pull_back, scale, x, weight = residuals
        d_params, d_zs = pull_back(cotangents)
        return d_params, tuple(d * scale[..., None] for d in d_zs), jnp.zeros_like(x), jnp.zeros_like(weight)

    dreg_terms.defvjp(forward, backward)
    return dreg_terms


def classification() -> Objective:
    """Softmax cross-entropy of class logits against the batch's labels, nats per image averaged
    over the batch. Metrics: `loss`, `accuracy` (share of images whose top logit is the label)."""

    def objective(params, apply_fn, batch, key):
        del key
        logits = apply_fn({"params": params}, to_float(batch["image"]))
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))
        return loss, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == batch["label"])}

    return objective
