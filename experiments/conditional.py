"""Class-conditional VAE and GAN: does each sample show the class it was asked for?

Trains the conditional VAE and GAN, MLP and conv, on MNIST and Fashion-MNIST for 5 epochs with
the models' defaults, and prints each run's conditional accuracy (the share of 1000 samples per
class that the dataset's feature network assigns to that class) and, for the GANs, the FID.

    .venv/bin/python experiments/conditional.py [--epochs 5] [--out runs/conditional] [--only NAME ...]

Finished runs in --out are reused (same config) and printed again.
"""

import argparse
from pathlib import Path

from jaxae.config import make_config
from jaxae.report.build import ensure_run

RUNS = {
    f"{model}_{arch}_{dataset}": dict(model=model, arch=arch, dataset=dataset)
    for dataset in ("mnist", "fashion_mnist")
    for model in ("vae", "gan")
    for arch in ("mlp", "conv")
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/conditional")
    parser.add_argument("--only", nargs="*", choices=RUNS, help="train only these runs")
    args = parser.parse_args()
    print("| run | epochs | conditional accuracy | FID | feature network | train seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.only or RUNS:
        config = make_config(**RUNS[name], conditional=True, epochs=args.epochs, progress=False)
        r = ensure_run(config, Path(args.out) / name)
        fid = f"{r['fid']:.2f}" if "fid" in r else "-"
        print(
            f"| {name} | {args.epochs} | {r['conditional_accuracy']:.4f} | {fid} | `{r['feature_network']}` | {r['train_seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
