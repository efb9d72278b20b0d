"""The main job until the full report lands: a compressing and a denoising autoencoder on real
Fashion-MNIST, each trained for a few epochs, with their test numbers printed.

    .venv/bin/python experiments/quickstart.py [--epochs 3] [--out runs/quickstart]
"""
import argparse

from jaxae import runs
from jaxae.config import make_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/quickstart")
    args = parser.parse_args()
    configs = {
        "compressing AE, 30-unit code": make_config("ae", code_size=30, epochs=args.epochs),
        "denoising AE, gaussian 0.2": make_config("dae", noise="gaussian:0.2", epochs=args.epochs),
    }
    rows = []
    for name, config in configs.items():
        results = runs.train(config, f"{args.out}/{config.model}")
        rows.append((name, results))
    print(f"\nFashion-MNIST test split, {args.epochs} epochs each, conv architecture")
    for name, r in rows:
        extra = f", noisy input {r['input_psnr']:.2f} dB, best blur {r['blur_psnr']:.2f} dB" if "input_psnr" in r else ""
        print(f"  {name}: test MSE {r['test_mse']:.5f}, PSNR {r['test_psnr']:.2f} dB{extra}")


if __name__ == "__main__":
    main()
