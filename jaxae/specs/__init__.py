"""The built-in models, each registered in `jaxae.registry` when its module is imported, in the
order the CLI lists them."""

import importlib

BUILTINS = ("autoencoder", "superres", "vae", "gan", "classifier")

for _module in BUILTINS:
    importlib.import_module(f"jaxae.specs.{_module}")
