"""jaxae: autoencoders in JAX/Flax (compressing, denoising, super-resolution, VAE, GAN) on real
MNIST and Fashion-MNIST. Start with `jaxae.runs.train(jaxae.make_config(...), workdir)` or the
`jaxae` command."""
from jaxae import data, losses, metrics, noise
from jaxae.config import Config, make_config, tiny
from jaxae.fast_random import use_unrolled_threefry_on_cpu

use_unrolled_threefry_on_cpu()  # same bits, faster steps on CPU (see jaxae.fast_random)

__all__ = ["Config", "data", "losses", "make_config", "metrics", "noise", "tiny"]
