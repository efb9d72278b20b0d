"""Run configuration: the fields common to every model, plus the model's own options section.

Every field is declared with `option(default, help, ...)`: its help text, the values it accepts
(a `Range` or `choices`, or a `check` function) and whether it may change when a run resumes.
The CLI is generated from these declarations, and `Config` checks every field's type and value,
and the rules between fields, when it is made, so that a bad setting is refused before anything
is written. Each model's section is the `options` dataclass of its `jaxae.registry.ModelSpec`.

    make_config("vae", latent=2, epochs=3)   # common fields and vae options by name
    config.options.latent                    # the model's own fields
    config.to_dict()                         # one flat dict, as results.json and checkpoints store it
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable

PARALLEL = ("jit", "pmap")  # jaxae.train.parallel: jit over a Mesh (default), or jax.pmap
SCHEDULES = ("cosine", "constant")
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of numbers, closed unless `low_open` / `high_open`; None is unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"


POSITIVE_INT = Range(1)
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)


def option(
    default,
    help: str,
    *,
    range: Range | None = None,
    choices: tuple | None = None,
    check: Callable[[Any], Any] | None = None,
    resumable: bool = False,
):
    """A config field: its default, help text, accepted values (a range, choices, or a `check`
    that raises ValueError) and whether `--resume` may change it."""
    metadata = {"help": help, "range": range, "choices": choices, "check": check, "resumable": resumable}
    return dataclasses.field(default=default, metadata=metadata)


def check_fields(obj) -> None:
    """Raises ValueError, naming the field, for the first field of the dataclass `obj` whose value
    has the wrong type or lies outside what its `option` accepts."""
    for field, hint in field_types(type(obj)).items():
        value = getattr(obj, field.name)
        meta = field.metadata
        if not conforms(value, hint):
            raise ValueError(f"{field.name} must be {type_name(hint)}, got {value!r}")
        if value is None:
            continue
        if meta.get("choices") is not None and value not in meta["choices"]:
            allowed = ", ".join(str(c) for c in meta["choices"] if c is not None)
            raise ValueError(f"{field.name} {value!r} is not one of {allowed}")
        if meta.get("range") is not None and not all(v in meta["range"] for v in (value if isinstance(value, tuple) else (value,))):
            raise ValueError(f"{field.name} must lie in {meta['range']}, got {value!r}")
        if meta.get("check") is not None:
            meta["check"](value)


@functools.cache
def field_types(cls) -> dict[dataclasses.Field, Any]:
    """{field: resolved type hint} of the fields of a dataclass declared with `option`, in order."""
    hints = typing.get_type_hints(cls)
    return {f: hints[f.name] for f in dataclasses.fields(cls) if "help" in f.metadata}


def conforms(value, hint) -> bool:
    """Whether `value` has the type `hint` (int, float, bool, str, tuple[int, ...], X | None);
    an int is a float, a bool is neither."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        (item, _) = typing.get_args(hint)
        return isinstance(value, tuple) and len(value) > 0 and all(conforms(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def type_name(hint) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return f"a tuple of {type_name(args[0])}s"
    if args:
        return " or ".join(type_name(a) for a in args)
    return {int: "an int", float: "a number", bool: "true or false", str: "a string", type(None): "None"}.get(hint, str(hint))


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must lie in [0, {MAX_SEED}] (a 32-bit seed), got {seed}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run: the common fields below and the model's `options`."""

    model: str = option("ae", "the model to train (see `jaxae train --help`)")
    dataset: str = option("fashion_mnist", "mnist, fashion_mnist, PATH.npz, a folder of .npy files, an image folder or tfds:NAME")
    train_size: int | None = option(None, "train on the first N training images (default: all)", range=POSITIVE_INT)
    test_size: int | None = option(None, "score on the first N test images (default: all)", range=POSITIVE_INT)
    epochs: int = option(20, "passes over the training images", range=POSITIVE_INT, resumable=True)
    batch_size: int = option(128, "images per training step", range=POSITIVE_INT)
    learning_rate: float = option(1e-3, "Adam's learning rate (peak of the cosine schedule)", range=POSITIVE)
    adam_b1: float = option(0.9, "Adam's first-moment decay", range=FRACTION)
    schedule: str = option("cosine", "learning-rate schedule: cosine (decays to 0 over the run) or constant", choices=SCHEDULES)
    seed: int = option(0, "the seed every key of the run derives from", check=_check_seed)
    steps_per_dispatch: int = option(64, "training steps per compiled dispatch (lax.scan)", range=POSITIVE_INT, resumable=True)
    progress: bool = option(True, "show a progress bar", resumable=True)
    resume: bool = option(False, "continue from the latest checkpoint in the workdir", resumable=True)
    checkpoint_every: int = option(
        0, "also checkpoint every N steps within epochs (0: at each epoch's end only)", range=NON_NEGATIVE, resumable=True
    )
    parallel: str = option(
        "jit", "data parallelism over all devices: jit over a device mesh, or pmap (same numbers)", choices=PARALLEL, resumable=True
    )
    micro_batches: int = option(
        1,
        "sum each step's gradient over K fixed pieces of the batch in a fixed order: the same bits on device counts dividing K "
        "(jit only; docs/distributed.md)",
        range=POSITIVE_INT,
    )
    device_data_limit: float | None = option(
        None,
        "MB of training data held on the device; larger data streams from host memory or disk (default: a quarter of the device's memory)",
        range=NON_NEGATIVE,
        resumable=True,
    )
    options: Any = None

    def __post_init__(self):
        from jaxae import registry

        check_fields(self)
        spec = registry.get(self.model)
        if self.options is None:
            object.__setattr__(self, "options", spec.options())
        if not isinstance(self.options, spec.options):
            raise ValueError(f"options of a {self.model} run must be {spec.options.__name__}, got {type(self.options).__name__}")
        check_fields(self.options)
        if self.batch_size % self.micro_batches:
            raise ValueError(
                f"batch_size {self.batch_size} does not split into {self.micro_batches} micro-batches: "
                f"use a multiple of {self.micro_batches}"
            )
        if self.micro_batches > 1 and self.parallel != "jit":
            raise ValueError("micro_batches needs parallel jit (the default)")
        if self.train_size is not None and self.batch_size > self.train_size:
            raise ValueError(f"batch_size {self.batch_size} is larger than train_size {self.train_size}: lower one or raise the other")
        spec.check(self)

    def replace(self, **changes) -> "Config":
        """A copy with some common fields or model options changed (by name)."""
        values = {k: v for k, v in self.to_dict().items() if k != "model"}
        return make_config(self.model, **{**values, **changes})

    def to_dict(self) -> dict:
        """The common fields and the model's options in one flat dict (JSON-able)."""
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        options = dataclasses.asdict(self.options)
        return {**common, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}

    def resumable_fields(self) -> tuple[str, ...]:
        """The fields `--resume` may change."""
        return tuple(f.name for obj in (self, self.options) for f in dataclasses.fields(obj) if f.metadata.get("resumable"))


def common_fields() -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(Config) if f.name != "options")


def make_config(model: str = "ae", **values) -> Config:
    """A Config for `model`: Config's defaults, then the model's own defaults, then `values`
    (common fields and the model's options by name; lists become tuples)."""
    from jaxae import registry

    spec = registry.get(model)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in {**spec.defaults, **values}.items()}
    common = {f.name for f in common_fields()}
    own = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(values) - common - own - {"model"})
    if unknown:
        raise ValueError(f"{model} has no setting {', '.join(unknown)}: its own are {', '.join(sorted(own)) or 'none'}")
    options = spec.options(**{k: v for k, v in values.items() if k in own})
    return Config(model=model, **{k: v for k, v in values.items() if k in common and k != "model"}, options=options)


def from_record(saved: dict) -> Config:
    """The Config of a saved flat dict (results.json, a checkpoint), fields it lacks taking the
    values runs had before those fields existed (`with_defaults`); fields of other models,
    which older records kept, are dropped."""
    from jaxae import registry

    filled = with_defaults(saved)
    spec = registry.get(filled["model"])
    known = {f.name for f in common_fields()} | {f.name for f in dataclasses.fields(spec.options)}
    return make_config(filled["model"], **{k: v for k, v in filled.items() if k in known and k != "model"})


def with_defaults(saved: dict) -> dict:
    """A saved flat config dict, with each field it lacks (written before the field existed) set
    to what runs of that model did before it: the spec's `absent` values, else the defaults."""
    from jaxae import registry

    model = saved.get("model", Config.model)
    spec = registry.get(model)
    defaults = make_config(model).to_dict()
    return {**defaults, **spec.absent, **saved}


def config_differences(saved: dict, current: Config, ignore: tuple[str, ...] = ()) -> list[str]:
    """Sorted names of the fields of `current` whose values differ in the saved dict `saved`
    (missing fields filled by `with_defaults`), except `ignore`."""
    filled = with_defaults(saved)
    now = current.to_dict()
    return sorted(k for k in now if k not in ignore and _normal(filled.get(k)) != _normal(now[k]))


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def tiny(model: str = "ae", **values) -> Config:
    """A run of a few seconds on CPU: small subsets, one epoch, no progress bar."""
    small = dict(epochs=1, batch_size=32, train_size=256, test_size=64, steps_per_dispatch=4, progress=False)
    return make_config(model, **{**small, **values})
