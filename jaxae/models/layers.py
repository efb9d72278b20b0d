"""Layers shared by the models: pixel shuffles (`depth_to_space`, `space_to_depth`), `PatchConv`
(a 3x3 convolution as one matmul), `ConvTranspose2x` and `GroupNorm`.

`ConvTranspose2x` is a stride-2 transposed convolution computed as one matmul and shifted adds:
the matmul gives every input pixel's contribution through every kernel tap, and each of the four
output phases (even/odd row, even/odd column) sums the contributions of the taps that feed it
(2x2 of a 4x4 kernel), shifted to their output pixels; the phases are then interleaved. It has
the same parameters and gives the same outputs and gradients as
`flax.linen.ConvTranspose(features, kernel_size, strides=(2, 2), padding="SAME")`, but avoids the
lhs-dilated convolution whose weight gradient is very slow on XLA:CPU (benchmarks/README.md). On
the DCGAN's layers it is also faster than four stride-1 convolutions, one per phase, most of all
for few output channels (the 64 -> 1 output layer), where a convolution uses the CPU poorly.
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


def _shift(x: jax.Array, axis: int, offset: int) -> jax.Array:
    """out[.., m, ..] = x[.., m + offset, ..] along `axis`, zero where m + offset is outside x."""
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (-offset, offset, 0)
    return jax.lax.pad(x, jnp.zeros((), x.dtype), config)


def _fold_taps(u: jax.Array, space: int, taps_axis: int) -> jax.Array:
    """Sums per-tap contributions into the two output phases of one axis of a stride-2 transposed
    conv: `u` has that input axis at `space` and its kernel taps at `taps_axis` (> space); the
    result drops the taps axis and has the two phases right after `space` (..., size, 2, ...), so
    that a reshape interleaves them."""
    phases = []
    for taps, first in _phase_taps(u.shape[taps_axis]):
        terms = [_shift(jax.lax.index_in_dim(u, tap, taps_axis, keepdims=False), space, first + a) for a, tap in enumerate(taps)]
        phases.append(sum(terms[1:], terms[0]))
    return jnp.stack(phases, axis=space + 1)


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
        # Every input pixel's contribution through every tap, (N, H, W, kh, kw, features): one matmul.
        u = jnp.einsum("nhwc,ijco->nhwijo", x, kernel)
        # Rows, then columns: (N, H, 2, W, kw, F), then (N, H, 2, W, 2, F), which is (N, 2H, 2W, F).
        y = _fold_taps(_fold_taps(u, space=1, taps_axis=3), space=3, taps_axis=4)
        n, h, w = x.shape[:3]
        y = y.reshape(n, 2 * h, 2 * w, self.features)
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


class GroupNorm(nn.Module):
    """Group normalization of (N, ..., C) float32 over each image's spatial positions and the C /
    num_groups channels of each group, then a per-channel scale and bias.

    Same parameters and outputs as `flax.linen.GroupNorm(num_groups)` (which also takes the
    variance as E[x^2] - E[x]^2), but reduced in two steps, over the spatial axes per channel and
    then over each group's channels, with C kept as the minor axis. XLA:CPU runs that several
    times faster than flax's reduction over a (..., groups, C / groups) view, and its gradient
    about 1.5x faster (on the DCGAN generator's layers).
    """

    num_groups: int = 32
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, c = x.shape[0], x.shape[-1]
        if c % self.num_groups:
            raise ValueError(f"GroupNorm: {self.num_groups} groups do not divide {c} channels")
        per_group = c // self.num_groups
        count = np.prod(x.shape[1:-1]) * per_group
        flat = x.reshape(n, -1, c)

        def group_mean(values: jax.Array) -> jax.Array:  # (n, positions, c) -> (n, num_groups)
            return jnp.sum(values, axis=1).reshape(n, self.num_groups, per_group).sum(-1) / count

        def per_channel(group_values: jax.Array) -> jax.Array:  # (n, num_groups) -> (n, 1.., c)
            spread = jnp.broadcast_to(group_values[:, :, None], (n, self.num_groups, per_group))
            return spread.reshape(n, *[1] * (x.ndim - 2), c)

        mean = group_mean(flat)
        variance = jnp.maximum(group_mean(jnp.square(flat)) - jnp.square(mean), 0.0)
        scale = self.param("scale", nn.initializers.ones, (c,)) * per_channel(jax.lax.rsqrt(variance + self.epsilon))
        return (x - per_channel(mean)) * scale + self.param("bias", nn.initializers.zeros, (c,))
