"""The `jaxae` command: parses arguments, builds a Config, calls the library. No logic of its own.

    jaxae train --model ae --dataset fashion_mnist --code-size 30 --workdir runs/ae30
    jaxae data prepare mnist --data-dir ~/tensorflow_datasets
"""
from __future__ import annotations

import argparse
import json
import sys

from jaxae.config import ARCHS, DATASETS, MODELS, make_config


def _train_parser(sub) -> None:
    # Options left out stay out, so that the model's own defaults (config.MODEL_DEFAULTS) apply.
    p = sub.add_parser("train", help="train and evaluate one model", argument_default=argparse.SUPPRESS)
    p.add_argument("--model", choices=MODELS, default="ae")
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--code-size", type=int, help="ae/dae: code units")
    p.add_argument("--noise", help="dae: KIND:LEVEL with KIND gaussian, mask or salt_and_pepper")
    p.add_argument("--factor", type=int, help="sr: downsampling factor (2 or 4)")
    p.add_argument("--sr-input", choices=("blurry", "lowres"), help="sr: the network's input")
    p.add_argument("--hidden", type=int, help="vae: hidden units")
    p.add_argument("--latent", type=int, help="vae/gan: latent units")
    p.add_argument("--beta", type=float, help="vae: weight of the latent (KL) loss")
    p.add_argument("--binarize", choices=("on", "off"), help="vae: dynamic binarization (default: on for mnist)")
    p.add_argument("--nll-samples", type=int, help="vae: importance samples for the test log-likelihood, 0 to skip")
    p.add_argument("--loss", choices=("mse", "bce"), help="ae/dae/sr: reconstruction loss")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--schedule", choices=("cosine", "constant"))
    p.add_argument("--seed", type=int)
    p.add_argument("--train-size", type=int, help="use the first N training images")
    p.add_argument("--test-size", type=int, help="use the first N test images")
    p.add_argument("--steps-per-dispatch", type=int)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --workdir")
    p.add_argument("--workdir", required=True, help="folder for metrics.jsonl, results.json and pictures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    prepare = data.add_parser("prepare", help="write a dataset as TFDS array_record files")
    prepare.add_argument("name", choices=DATASETS)
    prepare.add_argument("--data-dir", required=True, help="TFDS data folder to write into")
    return parser


def run(args: argparse.Namespace) -> None:
    if args.command == "train":
        from jaxae import runs

        options = {k: v for k, v in vars(args).items() if k not in ("command", "workdir")}
        if "binarize" in options:
            options["binarize"] = options["binarize"] == "on"
        results = runs.train(make_config(**options), args.workdir)
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
    elif args.command == "data":
        from jaxae import data

        print(data.prepare(args.name, args.data_dir))


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one line `jaxae: error: ...` and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError, FloatingPointError) as err:
        print(f"jaxae: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
