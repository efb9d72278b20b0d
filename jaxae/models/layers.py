"""Layers shared by the models: pixel shuffles (`depth_to_space`, `space_to_depth`), `PatchConv`
(a 3x3 convolution as one matmul) and `ConvTranspose2x`.

`ConvTranspose2x` is a stride-2 transposed convolution computed by phase decomposition: one
stride-1 convolution with 4x the output features, then depth-to-space. It has the same
parameters and gives the same outputs and gradients as
`flax.linen.ConvTranspose(features, kernel_size, strides=(2, 2), padding="SAME")`, but avoids the
lhs-dilated convolution whose weight gradient is very slow on XLA:CPU (see shared/DESIGN.md).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """(N, H, W, f*f*C) -> (N, H*f, W*f, C); channel index = (row phase, column phase, c)."""
    n, h, w, c = x.shape
    out = c // (factor * factor)
    x = x.reshape(n, h, w, factor, factor, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * factor, w * factor, out)


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/f, W/f, f*f*C), the exact inverse of `depth_to_space`."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // factor, factor, w // factor, factor, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // factor, w // factor, factor * factor * c)


def _phase_taps(k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """For one axis of a size-k, stride-2, SAME transposed conv: which kernel tap feeds each
    (input offset d, output phase r), as an index array (D, 2), its validity mask and the
    smallest offset. Output 2m + r = sum_d x[m + d] * w[2d + pad - r]."""
    pad = k - 1 if k <= 2 else (k + 1) // 2  # lax.conv_transpose's front padding for SAME, stride 2
    offsets = np.arange(-k, k + 1)
    taps = 2 * offsets[:, None] + pad - np.arange(2)[None, :]
    valid = (taps >= 0) & (taps < k)
    used = valid.any(axis=1)
    return np.clip(taps[used], 0, k - 1), valid[used], int(offsets[used][0])


class ConvTranspose2x(nn.Module):
    """Doubles H and W: (N, H, W, Cin) -> (N, 2H, 2W, features), float32."""

    features: int
    kernel_size: tuple[int, int] = (4, 4)
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
        taps_h, valid_h, first_h = _phase_taps(kh)
        taps_w, valid_w, first_w = _phase_taps(kw)
        # (Dh, Dw, rh, rw, Cin, Cout): the sub-kernel of each output phase, zero where no tap.
        sub = kernel[taps_h[:, None, :, None], taps_w[None, :, None, :]]
        valid = valid_h[:, None, :, None] & valid_w[None, :, None, :]
        sub = jnp.where(valid[..., None, None], sub, 0.0)
        dh, dw = sub.shape[:2]
        sub = sub.transpose(0, 1, 4, 2, 3, 5).reshape(dh, dw, x.shape[-1], 4 * self.features)
        y = jax.lax.conv_general_dilated(
            x,
            sub,
            window_strides=(1, 1),
            padding=((-first_h, dh - 1 + first_h), (-first_w, dw - 1 + first_w)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        y = depth_to_space(y, 2)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,))
        return y


class PatchConv(nn.Module):
    """3x3 SAME convolution as one matmul over 3x3 patches (im2col): (N, h, w, Cin) -> (N, h, w, features).

    Same parameters (a (9*Cin, features) kernel is a (3, 3, Cin, features) one, flattened) and
    outputs as `nn.Conv(features, (3, 3))`. On the small grids of these models XLA:CPU runs one
    large matmul faster than the convolution, and its gradient much faster inside a `lax.scan`.
    """

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate([padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=-1)
        return nn.Dense(self.features, kernel_init=self.kernel_init)(patches)
