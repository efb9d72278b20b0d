"""The foundation issue's numbers: the conv autoencoder at 30 and 16 units on both datasets, and
the gaussian (sigma 0.2) denoiser on Fashion-MNIST, each with its baselines.

    .venv/bin/python experiments/foundation.py [--epochs 20] [--out runs/foundation]

Finished runs in --out are reused (same config) and printed again.
"""

import argparse
from pathlib import Path

from jaxae.config import make_config
from jaxae.report.build import ensure_run

RUNS = {
    "ae_fashion_mnist_code30": dict(model="ae", dataset="fashion_mnist", code_size=30),
    "ae_fashion_mnist_code16": dict(model="ae", dataset="fashion_mnist", code_size=16),
    "ae_mnist_code30": dict(model="ae", dataset="mnist", code_size=30),
    "ae_mnist_code16": dict(model="ae", dataset="mnist", code_size=16),
    "dae_fashion_mnist_gaussian": dict(model="dae", dataset="fashion_mnist", noise="gaussian:0.2"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/foundation")
    parser.add_argument("--only", nargs="*", choices=RUNS, help="train only these runs")
    args = parser.parse_args()
    print("| run | epochs | test MSE | test PSNR (dB) | noisy input PSNR | best blur PSNR |")
    print("|---|---|---|---|---|---|")
    for name in args.only or RUNS:
        config = make_config(**RUNS[name], epochs=args.epochs, progress=False)
        r = ensure_run(config, Path(args.out) / name)
        baselines = f"{r['input_psnr']:.2f} | {r['blur_psnr']:.2f}" if "input_psnr" in r else "- | -"
        print(f"| {name} | {args.epochs} | {r['test_mse']:.5f} | {r['test_psnr']:.2f} | {baselines} |", flush=True)


if __name__ == "__main__":
    main()
