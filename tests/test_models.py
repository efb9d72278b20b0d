"""Autoencoder modules and the phase-decomposed transposed convolution."""

import chex
import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from jaxae.models.autoencoder import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, autoencoder
from jaxae.models.layers import ConvTranspose2x, GroupNorm, PatchConv, depth_to_space, space_to_depth

SHAPES = [(28, 28, 1), (16, 16, 1), (32, 32, 3), (64, 48, 3)]


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("code_size", [2, 30])
@pytest.mark.parametrize("shape", SHAPES)
def test_autoencoder_shapes(arch, code_size, shape):
    """Traced only (jax.eval_shape): shapes and dtypes, without compiling."""
    model = autoencoder(arch, code_size, shape)
    x = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    logits = jax.eval_shape(model.apply, params, x)
    chex.assert_shape(logits, (3, *shape))
    chex.assert_type(logits, jnp.float32)
    code = jax.eval_shape(lambda p, x: model.apply(p, x, method=model.encode), params, x)
    chex.assert_shape(code, (3, code_size))
    chex.assert_shape(jax.eval_shape(lambda p, c: model.apply(p, c, method=model.decode), params, code), (3, *shape))


@pytest.mark.parametrize("encoder,decoder", [(MLPEncoder(8), MLPDecoder((28, 28, 1))), (ConvEncoder(8), ConvDecoder((28, 28, 1)))])
def test_halves_work_alone(encoder, decoder):
    x = jnp.ones((2, 28, 28, 1))
    code = encoder.apply(encoder.init(jax.random.key(0), x), x)
    chex.assert_shape(code, (2, 8))
    out = decoder.apply(decoder.init(jax.random.key(1), code), code)
    chex.assert_shape(out, (2, 28, 28, 1))


def test_unknown_arch():
    with pytest.raises(ValueError, match="mlp or conv"):
        autoencoder("resnet", 8, (28, 28, 1))


def test_depth_to_space_layout():
    x = jnp.arange(2 * 2 * 4, dtype=jnp.float32).reshape(1, 2, 2, 4)
    y = depth_to_space(x, 2)
    chex.assert_shape(y, (1, 4, 4, 1))
    # Input pixel (0, 0) holds phases (0,0), (0,1), (1,0), (1,1) in its four channels.
    chex.assert_trees_all_equal(y[0, :2, :2, 0], jnp.array([[0.0, 1.0], [2.0, 3.0]]))


@pytest.mark.parametrize("kernel", [(3, 3), (4, 4), (5, 5), (2, 3)])
def test_conv_transpose_2x_matches_flax(kernel):
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 5))
    _assert_same_as_flax(ConvTranspose2x(6, kernel), nn.ConvTranspose(6, kernel, strides=(2, 2), padding="SAME"), x)


def _assert_same_as_flax(ours: nn.Module, stock: nn.Module, x: jax.Array) -> None:
    """`ours` takes the flax layer's parameters (perturbed from their init) and gives its outputs
    and gradients (of the parameters and of x)."""
    params = stock.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)
    chex.assert_trees_all_equal_shapes(params, ours.init(jax.random.key(1), x))
    chex.assert_trees_all_close(jax.jit(ours.apply)(params, x), jax.jit(stock.apply)(params, x), atol=1e-5)

    def grads(module):
        return jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), argnums=(0, 1)))(params, x)

    chex.assert_trees_all_close(grads(ours), grads(stock), atol=1e-4, rtol=1e-4)


def test_space_to_depth_inverts_depth_to_space():
    x = jax.random.normal(jax.random.key(0), (2, 8, 12, 3))
    for factor in (2, 4):
        chex.assert_shape(space_to_depth(x, factor), (2, 8 // factor, 12 // factor, 3 * factor * factor))
        chex.assert_trees_all_equal(depth_to_space(space_to_depth(x, factor), factor), x)


def test_patch_conv_is_a_3x3_same_conv():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 5))
    ours = PatchConv(6)
    params = ours.init(jax.random.key(1), x)
    kernel = params["params"]["Dense_0"]["kernel"].reshape(3, 3, 5, 6)
    bias = jax.random.normal(jax.random.key(2), (6,))
    params["params"]["Dense_0"]["bias"] = bias
    reference = nn.Conv(6, (3, 3)).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    chex.assert_trees_all_close(ours.apply(params, x), reference, atol=1e-5)


@pytest.mark.parametrize("shape,groups", [((3, 7, 7, 128), 32), ((2, 14, 14, 64), 32), ((2, 5, 6), 3)])
def test_group_norm_matches_flax(shape, groups):
    x = 3.0 * jax.random.normal(jax.random.key(0), shape) + 1.0
    _assert_same_as_flax(GroupNorm(groups), nn.GroupNorm(num_groups=groups), x)


def test_group_norm_refuses_groups_that_do_not_divide_the_channels():
    with pytest.raises(ValueError, match="GroupNorm: 3 groups do not divide 64 channels"):
        GroupNorm(3).init(jax.random.key(0), jnp.zeros((1, 4, 4, 64)))
