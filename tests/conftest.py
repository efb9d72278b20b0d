"""Test set-up: four CPU devices for the parallel tests; must run before any other JAX call."""
import jax

jax.config.update("jax_num_cpu_devices", 4)
