"""The `jaxae` command: parses arguments, builds a Config, calls the library. No logic of its own.

    jaxae train --model ae --dataset fashion_mnist --code-size 30 --workdir runs/ae30
    jaxae data prepare mnist --data-dir ~/tensorflow_datasets
    jaxae report --budget quick --out runs/report
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from jaxae.config import ARCHS, DATASETS, MODELS, PARALLEL, make_config

DISTRIBUTED = ("coordinator", "num_processes", "process_id")


class _Parser(argparse.ArgumentParser):
    """Turns a usage error into a ValueError, which `main` reports in one line like any user error."""

    def error(self, message):
        raise ValueError(f"{message} (see {self.prog} --help)")


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
    p.add_argument("--ema-decay", type=float, help="gan: sample from a moving average of the generator with this decay per step (default 0: none)")
    p.add_argument("--r1", type=float, metavar="GAMMA", help="gan: R1 penalty (GAMMA/2) E||grad_x D(x)||^2 on real images in the discriminator's loss (default 0: none)")
    p.add_argument("--r1-every", type=int, metavar="N", help="gan: apply the R1 penalty on every N-th step only, N times as strong (lazy R1; default 1)")
    p.add_argument("--loss", choices=("mse", "bce"), help="ae/dae/sr: reconstruction loss (default: bce for ae/dae on mnist, else mse)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--adam-b1", type=float, metavar="B1", help="Adam's first-moment decay, in [0, 1) (default 0.9; gan 0.5)")
    p.add_argument("--schedule", choices=("cosine", "constant"))
    p.add_argument("--seed", type=int)
    p.add_argument("--train-size", type=int, help="use the first N training images")
    p.add_argument("--test-size", type=int, help="use the first N test images")
    p.add_argument("--steps-per-dispatch", type=int)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --workdir")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also checkpoint within epochs, every STEPS steps (default: at each epoch's end only)")
    p.add_argument("--parallel", choices=PARALLEL, help="data parallelism over all devices: jit over a Mesh (default) or pmap")
    p.add_argument("--micro-batches", type=int, metavar="K",
                   help="sum each step's gradient over K fixed pieces of the batch in a fixed order: the same results on any device count dividing K (jit only)")
    p.add_argument("--workdir", required=True, help="folder for metrics.jsonl, results.json and pictures")
    group = p.add_argument_group("multi-process training, one command per process (docs/distributed.md)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, the same for every process")
    group.add_argument("--num-processes", type=int, help="how many processes train together")
    group.add_argument("--process-id", type=int, help="this process's number, 0 .. num-processes - 1")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    prepare = data.add_parser("prepare", help="write a dataset as TFDS array_record files")
    prepare.add_argument("name", choices=DATASETS)
    prepare.add_argument("--data-dir", required=True, help="TFDS data folder to write into")
    report = sub.add_parser("report", help="train what the lesson needs and write DIR/report.md")
    report.add_argument("--budget", choices=("quick", "full"), default="quick")
    report.add_argument("--out", required=True, help="folder for report.md, its figures and its runs")
    return parser


def run(args: argparse.Namespace) -> None:
    if args.command == "train":
        from jaxae import runs

        options = {k: v for k, v in vars(args).items() if k not in ("command", "workdir", *DISTRIBUTED)}
        if "binarize" in options:
            options["binarize"] = options["binarize"] == "on"
        config = make_config(**options)
        _start_distributed(args)
        results = runs.train(config, args.workdir)
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
    elif args.command == "data":
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
    try:
        args = build_parser().parse_args(argv)
        use_compilation_cache()
        run(args)
    except (ValueError, OSError, FloatingPointError) as err:
        print(f"jaxae: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
