"""The models jaxae trains, by name: one `ModelSpec` each, added with `register`.

A spec is everything the generic code knows of a model: the runner (`jaxae.runs.train`), the CLI
(its options and help), the report and the benchmarks read it, and none of them tests a model's
name. The built-in models (`jaxae.specs`) are registered on first use; a model defined outside
the package registers its own spec and then trains, resumes and evaluates like a built-in (see
experiments/custom_model.py).

The hooks, with `info` the data's `jaxae.data.DataInfo` and `state` the model's training state:

- `init(config, info, steps_per_epoch, key) -> state`: the initial state (also the template a
  checkpoint is restored into);
- `train_step(config, info) -> step(state, batch, key) -> (state, metrics)`: one optimizer step
  on a batch pytree ({"image", "label"}); metrics are scalars and include "loss";
- `eval_step(config, info) -> fn(state, batch, key) -> outputs`: the model's forward work on a
  batch, jittable (the benchmarks time it);
- `evaluate(config, state, data, key, history) -> dict`: the test results (JSON-able; every
  number finite), from the trained state, the `jaxae.data.Dataset` and the epochs' records;
- `pictures(config, state, data, key, folder, history)`: PNGs of the trained model;
- `on_epoch(config, state, record, info, key, folder)` (optional): after each epoch's
  checkpoint, with that epoch's metrics record (the GAN draws its progress pictures here);
- `check(config)`, `check_data(config, info)`: raise ValueError for settings the model cannot
  run, without or with the data's shape (called before anything is written);
- `needs_labels(config)`, `unroll(config)`: whether a run needs labelled data; whether its
  steps run as straight-line code (`jaxae.train.parallel.make_multi_step`).

`options` is the dataclass of the model's own config fields (`jaxae.config.option`), `defaults`
the common fields it sets otherwise (say epochs), and `absent` the values a saved config lacking
a field had before that field existed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping


def _never(config) -> bool:
    return False


def _accept(*args) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the generic code needs of one model (see the module docstring)."""

    name: str
    summary: str
    options: type
    init: Callable
    train_step: Callable
    eval_step: Callable
    evaluate: Callable
    pictures: Callable
    on_epoch: Callable | None = None
    check: Callable = _accept
    check_data: Callable = _accept
    needs_labels: Callable = _never
    unroll: Callable = _never
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    absent: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Adds `spec` under its name; a name already taken raises ValueError."""
    _builtins()
    if spec.name in _SPECS:
        raise ValueError(f"a model named {spec.name!r} is registered already")
    _SPECS[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    """The spec named `name`; ValueError naming the registered models otherwise."""
    _builtins()
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(_SPECS)}")
    return _SPECS[name]


def names() -> tuple[str, ...]:
    """Registered model names, built-ins first, in the order they were registered."""
    _builtins()
    return tuple(_SPECS)


def _builtins() -> None:
    import jaxae.specs  # noqa: F401  (registers the built-in models on import)
