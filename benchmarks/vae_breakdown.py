"""Where the benchmark's VAE train step spends its time: the library step against the same step
without dynamic binarization, without it and with plain SGD in place of Adam, and the step's
matmuls alone.

    .venv/bin/python -m benchmarks.vae_breakdown [--windows 7] [--window-seconds 1.5]

The four K-step dispatches are alternated window by window in one process (`timing.alternate`),
so that a change of the machine's speed hits them alike; prints each one's median steps/s and
XLA's FLOP count of its step.
"""

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from benchmarks import cases, timing
from benchmarks.run import jax_train, synthetic_images
from jaxae import fast_random
from jaxae.objectives import vae
from jaxae.train.step import make_train_step


def matmuls_alone(case: cases.JaxCase) -> cases.JaxCase:
    """The VAE's four weight matrices as plain linear maps (no biases, activations, sampling or
    likelihood) under a loss linear in the output, with its gradient and an SGD update: the
    forward, input-gradient and weight-gradient matmuls of the library step, of the same shapes,
    and almost nothing else."""
    params = case.state.params
    kernels = [jnp.array(params[net][layer]["kernel"]) for net in ("encoder", "decoder") for layer in ("Dense_0", "Dense_1")]
    latent = kernels[2].shape[0]

    def loss_fn(kernels, x):
        to_hidden, to_stats, from_code, to_pixels = kernels
        code = ((x @ to_hidden) @ to_stats)[:, :latent]  # the mean half of (mu, logvar)
        return jnp.sum((code @ from_code) @ to_pixels * x) / x.shape[0]

    def train_step(state, batch, key):
        x = batch["image"].reshape(batch["image"].shape[0], -1).astype(jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, x)
        return state.apply_gradients(grads=grads), {"loss": loss}

    sgd = optax.sgd(case.config.learning_rate)
    state = train_state.TrainState.create(apply_fn=None, params=kernels, tx=sgd)
    return dataclasses.replace(case, train_step=train_step, state=state)


def variants(case: cases.JaxCase) -> dict[str, cases.JaxCase]:
    """The library step and three cheaper ones, each from its own copy of the initial parameters
    (a dispatch donates its state)."""
    unbinarized = make_train_step(vae(dynamic_binarization=False), with_step=True)
    sgd = optax.sgd(case.config.learning_rate)
    params = jax.tree.map(jnp.array, case.state.params)
    sgd_state = case.state.replace(params=params, tx=sgd, opt_state=sgd.init(params))
    return {
        "library step": case,
        "without binarization": dataclasses.replace(case, train_step=unbinarized, state=jax.tree.map(jnp.array, case.state)),
        "without binarization, SGD": dataclasses.replace(case, train_step=unbinarized, state=sgd_state),
        "matmuls alone": matmuls_alone(case),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=7)
    parser.add_argument("--window-seconds", type=float, default=1.5)
    args = parser.parse_args()
    fast_random.use_unrolled_threefry_on_cpu()
    images = synthetic_images(cases.TRAIN_IMAGES)
    named = variants(cases.build("vae", jax.random.key(0)))
    runners, infos = zip(*(jax_train(case, images) for case in named.values()))
    rates = timing.alternate(list(runners), args.windows, args.window_seconds)
    for name, rate, info in zip(named, rates, infos):
        steps, gflop = timing.median(rate), info["flops_per_step"] / 1e9
        print(f"{name}: {steps:.1f} steps/s, {gflop:.3f} GFLOP per step (XLA's count), {steps * gflop:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
