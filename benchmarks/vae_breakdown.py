"""Where the benchmark's VAE train step spends its time: the library step against the same step
without dynamic binarization, and without it and with plain SGD in place of Adam.

    .venv/bin/python -m benchmarks.vae_breakdown [--windows 7] [--window-seconds 1.5]

The three K-step dispatches are alternated window by window in one process (`timing.alternate`),
so that a change of the machine's speed hits them alike; prints each one's median steps/s.
"""

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import optax

from benchmarks import cases, timing
from benchmarks.run import jax_train, synthetic_images
from jaxae import fast_random
from jaxae.objectives import vae
from jaxae.train.step import make_train_step


def variants(case: cases.JaxCase) -> dict[str, cases.JaxCase]:
    """The library step and two cheaper ones, each from its own copy of the initial parameters
    (a dispatch donates its state)."""
    unbinarized = make_train_step(vae(dynamic_binarization=False), with_step=True)
    sgd = optax.sgd(case.config.learning_rate)
    params = jax.tree.map(jnp.array, case.state.params)
    sgd_state = case.state.replace(params=params, tx=sgd, opt_state=sgd.init(params))
    return {
        "library step": case,
        "without binarization": dataclasses.replace(case, train_step=unbinarized, state=jax.tree.map(jnp.array, case.state)),
        "without binarization, SGD": dataclasses.replace(case, train_step=unbinarized, state=sgd_state),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=7)
    parser.add_argument("--window-seconds", type=float, default=1.5)
    args = parser.parse_args()
    fast_random.use_unrolled_threefry_on_cpu()
    images = synthetic_images(cases.TRAIN_IMAGES)
    named = variants(cases.build("vae", jax.random.key(0)))
    runners = [jax_train(case, images)[0] for case in named.values()]
    rates = timing.alternate(runners, args.windows, args.window_seconds)
    for name, rate in zip(named, rates):
        print(f"{name}: {timing.median(rate):.1f} steps/s")


if __name__ == "__main__":
    main()
