"""The `jaxae` command: train autoencoders, VAEs and GANs on MNIST, Fashion-MNIST or your own
images, and write the autoencoder lesson's report.

    jaxae train --model ae --dataset fashion_mnist --code-size 30 --workdir runs/ae30
    jaxae train --recipe dcgan_paper --workdir runs/dcgan
    jaxae data prepare mnist --data-dir ~/tensorflow_datasets
    jaxae report --budget quick --out runs/report

`jaxae train --help` lists every option with its default, the common ones first and then each
model's own; the options are generated from the config's field declarations (jaxae.config).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from jaxae import recipes, registry
from jaxae.config import Config, field_types, make_config

DISTRIBUTED = ("coordinator", "num_processes", "process_id")
RUN_ONLY = ("command", "workdir", "recipe", "overwrite", "model", *DISTRIBUTED)


class _Parser(argparse.ArgumentParser):
    """Turns a usage error into a ValueError, which `main` reports in one line like any user error."""

    def error(self, message):
        raise ValueError(f"{message} (see {self.prog} --help)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want integers separated by commas, got {text!r}") from None


def _value_type(hint):
    """The argparse type of a field's type hint (None dropped from X | None)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return _int_tuple
    if args and typing.get_origin(hint) is not tuple:
        return _value_type(args[0])
    return hint


def _describe(field: dataclasses.Field, defaults: dict[str, list[str]]) -> str:
    """A field's help line: what it does, its default (and models' own), range, resume rule."""
    meta, default = field.metadata, field.default
    shown = [] if default is None else [",".join(map(str, default)) if isinstance(default, tuple) else str(default)]
    shown += [f"{', '.join(models)}: {value}" for value, models in defaults.items()]
    notes = [f"default: {'; '.join(shown)}"] if shown else []
    if meta.get("range") is not None:
        notes.append(f"range {meta['range']}")
    text = meta["help"] + (f" ({'; '.join(notes)})" if notes else "")
    if meta.get("resumable"):
        text += " [may change on --resume]"
    return text.replace("%", "%%")


def _add_fields(group, cls, model_defaults: dict[str, dict[str, list[str]]]) -> None:
    for field, hint in field_types(cls).items():
        if field.name == "model":
            continue
        kind = _value_type(hint)
        description = _describe(field, model_defaults.get(field.name, {}))
        if kind is bool:
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, help=description)
        else:
            choices = [c for c in field.metadata.get("choices") or () if c is not None] or None
            metavar = None if choices else field.name.upper()
            group.add_argument(_flag(field.name), type=kind, choices=choices, metavar=metavar, help=description)


def _common_defaults() -> dict[str, dict[str, list[str]]]:
    """{common field: {value: [models that set it so]}}, from the specs' `defaults`."""
    found: dict[str, dict[str, list[str]]] = {}
    for name in registry.names():
        for key, value in registry.get(name).defaults.items():
            found.setdefault(key, {}).setdefault(str(value), []).append(name)
    return found


def _train_parser(sub, model: str | None) -> argparse.ArgumentParser:
    # Options left out stay out, so that the recipe's and the model's own defaults apply.
    p = sub.add_parser(
        "train",
        help="train and evaluate one model",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=None if model else model_options_help(),
        description="Train and evaluate one model; every option not given takes the recipe's value, else the model's default.",
    )
    p.add_argument("--model", choices=registry.names(), help="the model to train (default: ae, or the recipe's)")
    p.add_argument("--recipe", metavar="NAME", help=f"start from a named config: {', '.join(recipes.names())}, or a .toml path")
    p.add_argument("--workdir", required=True, help="folder for metrics.jsonl, results.json, checkpoints and pictures")
    p.add_argument("--overwrite", action="store_true", help="delete a finished or abandoned run in --workdir and start again")
    _add_fields(p.add_argument_group("common options"), Config, _common_defaults())
    if model is not None:
        spec = registry.get(model)
        _add_fields(p.add_argument_group(f"{model} options ({spec.summary})"), spec.options, {})
    group = p.add_argument_group("multi-process training, one command per process (docs/distributed.md)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, the same for every process")
    group.add_argument("--num-processes", type=int, help="how many processes train together")
    group.add_argument("--process-id", type=int, help="this process's number, 0 .. num-processes - 1")
    return p


def model_options_help() -> str:
    """Every model's own options, one group per model, as help text."""
    texts = []
    for name in registry.names():
        spec = registry.get(name)
        p = argparse.ArgumentParser(usage=argparse.SUPPRESS, add_help=False)
        _add_fields(p.add_argument_group(f"{name} options ({spec.summary})"), spec.options, {})
        texts.append(p.format_help().strip())
    return "\n\n".join(texts)


def build_parser(model: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; `train` holds the options of `model` (None: the common ones, with every
    model's own listed in its help)."""
    parser = _Parser(
        prog="jaxae",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, model)
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    prepare = data.add_parser("prepare", help="write a built-in dataset as TFDS array_record files")
    prepare.add_argument("name", choices=("mnist", "fashion_mnist"))
    prepare.add_argument("--data-dir", required=True, help="TFDS data folder to write into")
    report = sub.add_parser("report", help="train what the lesson needs and write DIR/report.md")
    report.add_argument("--budget", choices=("quick", "full"), default="quick")
    report.add_argument("--out", required=True, help="folder for report.md, its figures and its runs")
    return parser


def _chosen_model(argv: list[str]) -> tuple[str | None, dict]:
    """The model named by --model or by the --recipe's file, and the recipe's values."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    pre.add_argument("--recipe")
    known, _ = pre.parse_known_args(argv)
    values = recipes.load(known.recipe) if known.recipe else {}
    return known.model or values.get("model"), values


def parse_train(argv: list[str]) -> tuple[Config, argparse.Namespace]:
    """The Config of a `jaxae train ...` command line, and its parsed arguments."""
    model, recipe = _chosen_model(argv)
    helping = any(a in ("-h", "--help") for a in argv)
    args = build_parser(model if model or helping else "ae").parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k not in RUN_ONLY}
    values = {k: v for k, v in recipe.items() if k != "model"}
    return make_config(model or "ae", **{**values, **given}), args


def run(argv: list[str]) -> None:
    if argv[:1] == ["train"]:
        from jaxae import runs

        config, args = parse_train(argv)
        _start_distributed(args)
        results = runs.train(config, args.workdir, overwrite=getattr(args, "overwrite", False))
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
        return
    args = build_parser().parse_args(argv)
    if args.command == "data":
        from jaxae import data

        print(data.prepare(args.name, args.data_dir))
    elif args.command == "report":
        from jaxae import report

        print(report.build(args.budget, args.out, f"jaxae report --budget {args.budget} --out {args.out}"))


def _start_distributed(args: argparse.Namespace) -> None:
    """Joins a multi-process run (jax.distributed.initialize) when --coordinator and its partners are given."""
    given = [name for name in DISTRIBUTED if name in vars(args)]
    if not given:
        return
    if len(given) < len(DISTRIBUTED):
        raise ValueError("--coordinator, --num-processes and --process-id go together: give all three")
    import jax

    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def use_compilation_cache() -> None:
    """Keeps compiled XLA programs in $JAXAE_XLA_CACHE (default ~/.cache/jaxae/xla): runs with
    the same shapes, in this process or a later one, skip their compilation."""
    import jax

    folder = os.environ.get("JAXAE_XLA_CACHE") or Path.home() / ".cache" / "jaxae" / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one line `jaxae: error: ...` and returns 2."""
    from jaxae.fast_random import use_unrolled_threefry_on_cpu

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        use_compilation_cache()
        use_unrolled_threefry_on_cpu()
        run(argv)
    except (ValueError, OSError, FloatingPointError) as err:
        print(f"jaxae: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
