"""Super-resolution networks: sharp (N, H, W, C) pixel logits from a degraded image.

Two inputs, as `jaxae.config.Config.sr_input` names them:

- "blurry": the l x l image brought back to H x H by bicubic interpolation (upscale 1).
- "lowres": the l x l image itself (upscale = factor = H / l); the network upsamples it.

One network serves both: the input is cut into cells (space-to-depth) so that a stack of 3x3
convolutions runs on a coarse grid of H/cell x H/cell positions, and a sub-pixel convolution
(ESPCN: a conv with cell^2 * C outputs, then depth-to-space) gives the H x H output. This is
residual learning (VDSR): the last conv is zero-initialised and its output is added, in logit
space, to the logit of the input brought to H x H (itself for "blurry", nearest-neighbour for
"lowres"), so training starts from the interpolation and learns the correction. Working on the
coarse grid loses nothing (space-to-depth is a permutation; a blurry image carries no more than
its l x l source) and costs cell^2 times fewer FLOPs than convolving at H x H.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxae.models.autoencoder import CELL
from jaxae.models.layers import PatchConv, depth_to_space, space_to_depth

# Inputs are clipped to [EPS, 1 - EPS] before the logit, so that 0 and 1 stay finite (+-6.9).
EPS = 1e-3


def input_logit(x: jax.Array) -> jax.Array:
    """Images in [0, 1] -> logits whose sigmoid is x clipped to [EPS, 1 - EPS]; same shape."""
    x = jnp.clip(x, EPS, 1.0 - EPS)
    return jnp.log(x) - jnp.log1p(-x)


class SuperResolver(nn.Module):
    """Images (N, h, w, C) in [0, 1] -> sharp logits (N, h*upscale, w*upscale, C), float32.

    `upscale` is 1 for blurry H x H input and the factor for l x l input; it must divide `cell`,
    and `cell` must divide H. `depth` 3x3 convs of `features` channels with ReLU run on the
    H/cell grid.
    """

    upscale: int = 1
    cell: int = CELL
    features: int = 32
    depth: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.cell % self.upscale:
            raise ValueError(f"upscale {self.upscale} does not divide the cell size {self.cell}")
        y = space_to_depth(x, self.cell // self.upscale)
        for _ in range(self.depth):
            y = nn.relu(PatchConv(self.features)(y))
        correction = PatchConv(self.cell * self.cell * x.shape[-1], kernel_init=nn.initializers.zeros_init())(y)
        nearest = jnp.repeat(jnp.repeat(x, self.upscale, axis=1), self.upscale, axis=2)
        return input_logit(nearest) + depth_to_space(correction, self.cell)


def superres(sr_input: str, factor: int) -> SuperResolver:
    """The network for `sr_input` "blurry" (H x H input) or "lowres" (H/factor input)."""
    if sr_input == "blurry":
        return SuperResolver()
    if sr_input == "lowres":
        return SuperResolver(upscale=factor)
    raise ValueError(f"unknown sr_input {sr_input!r}: use blurry or lowres")
