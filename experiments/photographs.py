"""Every built-in model on real photographs, through the CLI: does super-resolution beat bicubic there?

The only photograph on every machine with jaxae's dependencies is matplotlib's sample image
`grace_hopper.jpg` (600 x 512 RGB). Its 32x32 patches (stride 8) make two datasets in the formats
a researcher brings:

- `OUT/photos.npz`: colour patches, no labels; train from the top 450 rows, test from the rest
  (the two never overlap);
- `OUT/grey/{train,test}/{left,right}/*.png`: the same patches in grey as an image folder, the
  class saying which half of the photograph the patch's centre lies in.

Then `jaxae train` of each built-in model on each (the classifier needs labels: grey only), and a
table of each run's main results.

    .venv/bin/python experiments/photographs.py [--epochs 5] [--out runs/photographs]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.cbook
import numpy as np
from PIL import Image

PATCH, STRIDE, TRAIN_ROWS = 32, 8, 450
MODELS = ("ae", "dae", "sr", "vae", "gan", "classifier")
SHOWN = {  # results printed per model
    "ae": ("test_psnr",),
    "dae": ("test_psnr", "input_psnr", "blur_psnr"),
    "sr": ("test_psnr", "bicubic_psnr", "nearest_psnr"),
    "vae": ("test_neg_elbo",),
    "gan": ("fid", "fid_floor", "fid_skipped"),
    "classifier": ("test_accuracy",),
}


def patches() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "test"}: (uint8 (N, 32, 32, 3) patches, int32 (N,) 0 left / 1 right half)."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        photo = np.asarray(Image.open(file).convert("RGB"))
    height, width, _ = photo.shape
    splits = {"train": ([], []), "test": ([], [])}
    for top in range(0, height - PATCH + 1, STRIDE):
        split = "train" if top + PATCH <= TRAIN_ROWS else "test" if top >= TRAIN_ROWS else None
        for left in range(0, width - PATCH + 1, STRIDE) if split else ():
            splits[split][0].append(photo[top : top + PATCH, left : left + PATCH])
            splits[split][1].append(int(left + PATCH // 2 >= width // 2))
    return {s: (np.stack(x), np.array(y, np.int32)) for s, (x, y) in splits.items()}


def write_datasets(out: Path) -> dict[str, Path]:
    """The colour .npz and the grey image folder in `out`; {"colour npz", "grey folder"}: paths."""
    data = patches()
    np.savez(out / "photos.npz", x_train=data["train"][0], x_test=data["test"][0])
    for split, (images, labels) in data.items():
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = out / "grey" / split / ("left", "right")[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).convert("L").save(folder / f"{i:05d}.png")
    return {"colour npz": out / "photos.npz", "grey folder": out / "grey"}


def train(model: str, dataset: Path, workdir: Path, epochs: int) -> dict:
    """results.json of `jaxae train` (a finished run in `workdir` is read, not retrained)."""
    if not (workdir / "results.json").exists():
        command = [sys.executable, "-m", "jaxae.cli", "train", "--model", model, "--dataset", str(dataset), "--epochs", str(epochs)]
        subprocess.run([*command, "--no-progress", "--workdir", str(workdir)], check=True, stdout=subprocess.DEVNULL)
    return json.loads((workdir / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/photographs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = write_datasets(out)
    print("| model | data | image shape | train / test images | results | pictures |")
    print("|---|---|---|---|---|---|")
    for model in MODELS:
        for name, path in datasets.items():
            if model == "classifier" and name == "colour npz":
                continue
            workdir = out / "runs" / f"{model}_{name.split()[0]}"
            r = train(model, path, workdir, args.epochs)
            shown = ", ".join(f"{k} {r[k]:.4g}" if isinstance(r[k], float) else f"{k}: {r[k]}" for k in SHOWN[model] if k in r)
            shape = "x".join(map(str, r["image_shape"]))
            pictures = len(list(workdir.glob("*.png")))
            print(f"| {model} | {name} | {shape} | {r['train_images']} / {r['test_images']} | {shown} | {pictures} |", flush=True)


if __name__ == "__main__":
    main()
