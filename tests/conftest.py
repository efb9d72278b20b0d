"""Test set-up: four CPU devices for the parallel tests, and one compilation cache for the session
(tests that build the same programs compile them once). Must run before any other JAX call."""
import tempfile

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jaxae-xla-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
