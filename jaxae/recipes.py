"""Recipes: named configs kept as TOML files in jaxae/configs/ (or any .toml path).

A recipe file holds `model = "NAME"` and any common fields and options of that model, by name:

    # The full report's VAE: 87.19 nats (k=5000) after 400 epochs (README, VAE section).
    model = "vae"
    hidden = 1000
    ...

`jaxae train --recipe NAME` starts from it (options given on the command line win), and the
report and the benchmarks build their configs from recipes too.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from jaxae.config import Config, make_config

FOLDER = Path(__file__).parent / "configs"


def names() -> tuple[str, ...]:
    """The recipes in jaxae/configs/, sorted."""
    return tuple(sorted(p.stem for p in FOLDER.glob("*.toml")))


def load(name: str) -> dict:
    """The values of recipe `name` (a file in jaxae/configs/ without its .toml, or a path)."""
    path = Path(name) if name.endswith(".toml") else FOLDER / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"no recipe {name!r}: use one of {', '.join(names())}, or the path of a .toml file")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    if "model" not in values:
        raise ValueError(f'{path}: a recipe needs model = "NAME"')
    return values


def config(name: str, **overrides) -> Config:
    """The Config of recipe `name`, with `overrides` (common fields or options, by name)."""
    values = {**load(name), **overrides}
    return make_config(values.pop("model"), **values)
