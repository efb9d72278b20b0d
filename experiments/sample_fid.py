"""GAN against VAE samples: the FID of finished runs on their dataset's feature network.

    .venv/bin/python experiments/sample_fid.py RUN_DIR [RUN_DIR ...]

For a GAN run, its results.json's fid (10000 samples), fid_without_ema (where it sampled from a
moving average of the generator) and fid_floor; for a VAE run, the FID of as many prior samples
(Bernoulli means) as its test split has images, computed here.
"""

import argparse
import json
from pathlib import Path

from jaxae import features, runs
from jaxae.config import from_record
from jaxae.report.build import vae_sample_fid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (results.json and checkpoints)")
    args = parser.parse_args()
    print("| run | model | dataset | epochs | FID | FID without EMA | FID floor | feature network |")
    print("|---|---|---|---|---|---|---|---|")
    for workdir in args.runs:
        results = json.loads((workdir / "results.json").read_text())
        config = from_record(results["config"])  # a run saved before a field existed did what its model did then
        if config.model == "gan":
            fid, net = results["fid"], results["feature_network"]
            raw, floor = f"{results.get('fid_without_ema', fid):.2f}", f"{results['fid_floor']:.2f}"
        elif config.model == "vae":
            net = features.network_for(config, runs.prepare_data(config))
            fid, raw, floor = vae_sample_fid(config, workdir, results["test_images"], net), "-", "-"
            net = net.name
        else:
            raise SystemExit(f"{workdir} is a {config.model} run: give GAN or VAE runs")
        print(f"| {workdir} | {config.model} | {config.dataset} | {config.epochs} | {fid:.2f} | {raw} | {floor} | {net} |", flush=True)


if __name__ == "__main__":
    main()
