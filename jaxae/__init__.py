"""jaxae: autoencoders in JAX/Flax (compressing, denoising, super-resolution, VAE, GAN) on MNIST,
Fashion-MNIST and the researcher's own images. Start with
`jaxae.runs.train(jaxae.make_config(...), workdir)` or the `jaxae` command; add a model with
`jaxae.registry.register`. Importing jaxae changes nothing in JAX (see `jaxae.fast_random`)."""

from jaxae import data, losses, metrics, noise, registry
from jaxae.config import Config, make_config, tiny

__all__ = ["Config", "data", "losses", "make_config", "metrics", "noise", "registry", "tiny"]
