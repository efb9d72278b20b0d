"""Class-conditional VAE and GAN: does each sample show the class it was asked for?

Trains the conditional VAE (the `cvae` recipe: beta 2) and GAN (the gan model's defaults), MLP
and conv, on MNIST and Fashion-MNIST for 5 epochs, and prints each run's conditional accuracy
(the share of 1000 samples per class that the dataset's feature network assigns to that class),
the VAEs' test -ELBO and the GANs' FID.

    .venv/bin/python experiments/conditional.py [--epochs 5] [--out runs/conditional] [--only NAME ...]

Finished runs in --out are reused (same config) and printed again.
"""

import argparse
from pathlib import Path

from jaxae import recipes
from jaxae.config import Config, make_config
from jaxae.report.build import ensure_run

RUNS = {
    f"{model}_{arch}_{dataset}": dict(model=model, arch=arch, dataset=dataset)
    for dataset in ("mnist", "fashion_mnist")
    for model in ("vae", "gan")
    for arch in ("mlp", "conv")
}


def run_config(model: str, epochs: int, **where) -> Config:
    """The conditional `model` (vae or gan) on `where` (arch, dataset) for `epochs`."""
    if model == "vae":
        return recipes.config("cvae", epochs=epochs, progress=False, **where)
    return make_config(model, conditional=True, epochs=epochs, progress=False, **where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/conditional")
    parser.add_argument("--only", nargs="*", choices=RUNS, help="train only these runs")
    args = parser.parse_args()
    print("| run | epochs | conditional accuracy | test -ELBO | FID | feature network | train seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.only or RUNS:
        config = run_config(epochs=args.epochs, **RUNS[name])
        r = ensure_run(config, Path(args.out) / name)
        fid = f"{r['fid']:.2f}" if "fid" in r else "-"
        neg_elbo = f"{r['test_neg_elbo']:.2f}" if "test_neg_elbo" in r else "-"
        cells = [
            name,
            args.epochs,
            f"{r['conditional_accuracy']:.4f}",
            neg_elbo,
            fid,
            f"`{r['feature_network']}`",
            f"{r['train_seconds']:.0f}",
        ]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
