"""Trains each built-in model for 8 micro-batched steps on MNIST digits in this process and prints
{model: sha256 of its final state} as JSON (tests/test_parallel.py compares processes)."""

import hashlib
import json
import sys

import jax
import numpy as np
from flax import serialization

from jaxae import registry
from jaxae.config import tiny
from jaxae.data import load_dataset
from jaxae.runs import fit_options
from jaxae.train.loop import fit

CASES = {"ae": {"arch": "conv"}, "dae": {"arch": "mlp"}, "sr": {}, "vae": {"arch": "conv"}, "gan": {"arch": "conv"}, "classifier": {}}

data = load_dataset("mnist").subset(256, 64)
hashes = {}
for model in sys.argv[1:] or CASES:
    config = tiny(model, micro_batches=2, steps_per_dispatch=4, **CASES[model])
    spec = registry.get(model)
    state = spec.init(config, data.info, 8, jax.random.key(0))
    options = {**fit_options(config), "epochs": 1, "progress": False}
    result = fit(state, spec.train_step(config, data.info), data.train, key=jax.random.key(1), **options)
    leaves = jax.tree.leaves(jax.device_get(serialization.to_state_dict(result.state)))
    hashes[model] = hashlib.sha256(b"".join(np.ascontiguousarray(x).tobytes() for x in leaves)).hexdigest()
print(json.dumps(hashes))
