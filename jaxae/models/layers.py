"""Layers shared by the models: pixel shuffles (`depth_to_space`, `space_to_depth`), `PatchConv`
(a 3x3 convolution as one matmul) and `ConvTranspose2x`.

`ConvTranspose2x` is a stride-2 transposed convolution computed by phase decomposition: each of
the four output phases (even/odd row, even/odd column) is a stride-1 convolution of the input
with the kernel taps that feed it (2x2 of a 4x4 kernel), and the phases are interleaved. It has
the same parameters and gives the same outputs and gradients as
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


def _phase_taps(k: int) -> tuple[tuple[range, int], tuple[range, int]]:
    """For one axis of a size-k, stride-2, SAME transposed conv, per output phase r = 0, 1: the
    kernel taps that feed it, in input order (every second tap), and the input offset of the first
    one. Output 2m + r = sum_d x[m + d] * w[2d + pad - r] over the offsets d where that tap exists."""
    pad = k - 1 if k <= 2 else (k + 1) // 2  # lax.conv_transpose's front padding for SAME, stride 2
    phases = []
    for r in (0, 1):
        offsets = np.array([d for d in range(-k, k + 1) if 0 <= 2 * d + pad - r < k])
        taps = 2 * offsets + pad - r
        phases.append((range(int(taps[0]), int(taps[-1]) + 1, 2), int(offsets[0])))
    return tuple(phases)


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

        def phase(rows: tuple[range, int], cols: tuple[range, int]) -> jax.Array:
            (taps_h, first_h), (taps_w, first_w) = rows, cols
            return jax.lax.conv_general_dilated(
                x,
                kernel[taps_h.start : taps_h.stop : 2, taps_w.start : taps_w.stop : 2],  # a slice, not a gather
                window_strides=(1, 1),
                padding=((-first_h, len(taps_h) - 1 + first_h), (-first_w, len(taps_w) - 1 + first_w)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )

        # (2, 2, N, H, W, C) by (row phase, column phase) -> (N, H, 2, W, 2, C) -> (N, 2H, 2W, C).
        y = jnp.stack([jnp.stack([phase(rows, cols) for cols in _phase_taps(kw)]) for rows in _phase_taps(kh)])
        n, h, w = x.shape[:3]
        y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * h, 2 * w, self.features)
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
