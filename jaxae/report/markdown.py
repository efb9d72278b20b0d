"""report.md from the report's numbers: five sections of tables, findings and figure links.

Every number in the text is read from the tables passed in; nothing is typed by hand.
"""

from __future__ import annotations

from jaxae.report.plan import DATASETS, Budget

NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
ARCHS = {"mlp": "MLP", "conv": "convolutional"}


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats are formatted by the caller."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def figure(path: str, caption: str) -> str:
    return f"![{caption}]({path})\n*{caption}* (`{path}`)"


def header(facts: dict) -> str:
    env = facts["environment"]
    return f"""# jaxae report ({facts["budget"]} budget)

Produced by `{facts["command"]}` on {facts["date"]}. Budget: {facts["budget_description"]}.
Seed {facts["seed"]} for every run. Software: jax {env["jax"]}, jaxlib {env["jaxlib"]}, flax {env["flax"]},
optax {env["optax"]}, Python {env["python"]}. Device: {env["device_count"]} x {env["device_kind"]} ({env["platform"]}).
Training time summed over the runs: {facts["train_seconds_all_runs"]:.0f} s; this invocation took
{facts["wall_seconds_this_invocation"]:.0f} s (runs found finished in the folder are reused, not retrained).
Each run is in `runs/NAME/` with its `results.json` (full config included) and pictures;
every test figure is on the test split (its first `test_size` images where the budget says so).
"""


def denoising(transfer: dict) -> str:
    columns, rows = transfer["columns"], transfer["rows"]
    psnr = {name: dict(zip(columns, values)) for name, values in rows.items()}
    body = table(
        ["trained on \\ tested on", *columns],
        [[name, *(f"{v:.2f}" for v in values)] for name, values in rows.items()],
    )

    def gap(trained: str, tested: str, specialist: str) -> str:
        a, b = psnr[trained][tested], psnr[specialist][tested]
        return f"{a:.2f} dB against {b:.2f} dB for `{specialist}` ({a - b:+.2f} dB; noisy input {psnr['noisy input'][tested]:.2f} dB)"

    own = psnr["dae_mnist_gaussian"]["mnist/gaussian"], psnr["dae_fashion_mnist_gaussian"]["fashion_mnist/gaussian"]
    findings = "\n".join(
        [
            f"- Trained on gaussian noise, tested on missing pixels (Fashion-MNIST): "
            f"{gap('dae_fashion_mnist_gaussian', 'fashion_mnist/mask', 'dae_fashion_mnist_mask')}.",
            f"- Trained on missing pixels, tested on gaussian noise (Fashion-MNIST): "
            f"{gap('dae_fashion_mnist_mask', 'fashion_mnist/gaussian', 'dae_fashion_mnist_gaussian')}.",
            "- Trained on clothes, tested on digits (gaussian): "
            f"{gap('dae_fashion_mnist_gaussian', 'mnist/gaussian', 'dae_mnist_gaussian')}.",
            "- Trained on digits, tested on clothes (gaussian): "
            f"{gap('dae_mnist_gaussian', 'fashion_mnist/gaussian', 'dae_fashion_mnist_gaussian')}.",
            f"- Each dataset's own gaussian denoiser: {own[0]:.2f} dB on digits, {own[1]:.2f} dB on clothes; a denoiser helps only "
            "where it beats the noisy input and the blur in the same column.",
        ]
    )
    return f"""## 1. Denoising: does a denoiser transfer to other noise and other data?

Test PSNR in dB (higher is better). Rows: the denoiser (dataset and noise it was trained on:
gaussian sigma 0.2, mask = 30% missing pixels set to 0, salt_and_pepper = 10% of pixels set to 0
or 1), then two baselines on the same corrupted images: the noisy input itself and the best
gaussian blur (sigma chosen per column on the test images, an optimistic baseline).

{body}

{findings}

{figure("runs/dae_fashion_mnist_gaussian/samples.png", "Fashion-MNIST, gaussian 0.2: clean / noisy / denoised")}

{figure("runs/dae_fashion_mnist_mask/samples.png", "Fashion-MNIST, 30% missing pixels: clean / masked / restored")}
"""


def compression(results: dict, pca: dict, code_sizes: tuple[int, ...]) -> str:
    rows = []
    for size in code_sizes:
        row = [size]
        for dataset in DATASETS:
            ae, base = results[f"ae_{dataset}_code{size}"], pca[f"{dataset}_code{size}"]
            row += [f"{ae['test_mse']:.4f}", f"{base['mse']:.4f}", f"{ae['test_psnr']:.2f}", f"{base['psnr']:.2f}"]
        rows.append(row)
    header_cells = ["code units"]
    for dataset in DATASETS:
        header_cells += [f"{NAMES[dataset]} AE MSE", "PCA MSE", "AE PSNR", "PCA PSNR"]
    digits, clothes = results["ae_mnist_code16"], results["ae_fashion_mnist_code16"]
    arch, ratio = ARCHS[digits["config"]["arch"]], clothes["test_mse"] / digits["test_mse"]
    return f"""## 2. Compression: how small can the code be?

Test reconstruction MSE per pixel (images in [0, 1]) and PSNR (dB) of the {arch} autoencoder
({digits["config"]["epochs"]} epochs) and of PCA with as many components, fitted on the same training images.

{table(header_cells, rows)}

- With 16 units the digits' test MSE is {digits["test_mse"]:.4f} ({digits["test_psnr"]:.2f} dB) and the clothes'
  {clothes["test_mse"]:.4f} ({clothes["test_psnr"]:.2f} dB): the clothes/digits error ratio is {ratio:.2f}.
- Against PCA at 16 components: digits {pca["mnist_code16"]["mse"]:.4f}, clothes {pca["fashion_mnist_code16"]["mse"]:.4f}.

{figure("runs/ae_mnist_code16/samples.png", "MNIST, 16-unit code: test images (top rows) and reconstructions (bottom)")}

{figure("runs/ae_fashion_mnist_code16/samples.png", "Fashion-MNIST, 16-unit code: test images and reconstructions")}
"""


def superres(results: dict, factors: tuple[int, ...]) -> str:
    rows = []
    for dataset in DATASETS:
        for factor in factors:
            r = results[f"sr_{dataset}_x{factor}"]
            rows.append(
                [
                    NAMES[dataset],
                    f"{28 // factor}x{28 // factor} -> 28x28",
                    *(f"{r[f'{m}_psnr']:.2f} / {r[f'{m}_ssim']:.3f}" for m in ("nearest", "bicubic", "test")),
                    f"{r['test_psnr'] - r['bicubic_psnr']:+.2f}",
                ]
            )
    return f"""## 3. Super-resolution: the network against interpolation

Test PSNR (dB) / SSIM of the 28x28 output. The network sees the bicubic upsampling of the
low-resolution image (the blurry input) and is trained to output the sharp image.

{table(["dataset", "degradation", "nearest", "bicubic", "network", "gain over bicubic (dB)"], rows)}

{figure("runs/sr_fashion_mnist_x2/samples.png", "Fashion-MNIST, factor 2: nearest / bicubic / network / original")}

{figure(f"runs/sr_mnist_x{max(factors)}/samples.png", f"MNIST, factor {max(factors)}: nearest / bicubic / network / original")}
"""


def vae(results: dict, fids: dict) -> str:
    rows = []
    for name in ("vae_mnist", "vae_fashion_mnist", "vae_mnist_latent2"):
        r = results[name]
        nll = "-" if r["test_nll"] is None else f"{r['test_nll']:.2f} (k={r['nll_samples']})"
        dataset = r["config"]["dataset"]
        fid = f"{fids[dataset]:.2f}" if name == f"vae_{dataset}" else "-"
        rows.append(
            [
                name,
                r["likelihood"],
                r["config"]["latent"],
                f"{r['test_neg_elbo']:.2f}",
                f"{r['test_recon']:.2f}",
                f"{r['test_kl']:.2f}",
                nll,
                fid,
            ]
        )
    return f"""## 4. Variational autoencoder

Nats per image summed over the 784 pixels. MNIST is binarized (Bernoulli likelihood, dynamic
binarization in training, one fixed binarization of the test set); Fashion-MNIST keeps its grey
levels (Gaussian likelihood, nats not comparable with the Bernoulli ones). The negative ELBO is
reconstruction + KL with one sample per image; the log-likelihood is the importance-weighted
estimate with k samples (never above the negative ELBO in expectation). FID: prior samples on
the GAN's feature network (section 5).

{table(["run", "likelihood", "latent", "-ELBO", "reconstruction", "KL", "-log p(x) IWAE", "FID of samples"], rows)}

{figure("runs/vae_mnist/samples.png", "MNIST VAE: samples from the prior (Bernoulli means)")}

{figure("runs/vae_fashion_mnist/samples.png", "Fashion-MNIST VAE: samples from the prior")}

{figure("runs/vae_mnist_latent2/latent_grid.png", "MNIST, 2-unit latent: decoded grid of prior quantiles")}

{figure("runs/vae_mnist_latent2/latent_scatter.png", "MNIST, 2-unit latent: test codes by label")}
"""


def gan(results: dict, fids: dict) -> str:
    rows = []
    for dataset in DATASETS:
        r = results[f"gan_{dataset}"]
        rows.append(
            [
                NAMES[dataset],
                f"{r['fid']:.2f}",
                f"{r['fid_floor']:.2f}",
                f"{r['fid'] / r['fid_floor']:.1f}",
                f"{fids[dataset]:.2f}",
                f"{r['classifier_accuracy']:.4f}",
                f"`{r['feature_network']}`",
            ]
        )
    last = {d: results[f"gan_{d}"]["config"]["epochs"] for d in DATASETS}
    kind = {"conv": "DCGAN", "mlp": "MLP GAN"}[results["gan_mnist"]["config"]["arch"]]
    return f"""## 5. GAN

FID (lower is better) between generated images and the test images, in the features of the
project's own classifier (named; its test accuracy beside it). The floor is the FID of as many real
training images: what a perfect generator would score.

{table(["dataset", "GAN FID", "floor", "GAN / floor", "VAE FID", "classifier accuracy", "feature network"], rows)}

{figure(f"runs/gan_mnist/samples_epoch_{last['mnist']:02d}.png", f"MNIST {kind} samples after the last epoch")}

{figure(f"runs/gan_fashion_mnist/samples_epoch_{last['fashion_mnist']:02d}.png", f"Fashion-MNIST {kind} samples after the last epoch")}

{figure("runs/gan_mnist/losses.png", f"MNIST {kind}: discriminator and generator losses per epoch")}
"""


def answers_section(budget_name: str, checked: list[dict]) -> str:
    """The lesson's answers, each with its evidence; where a quick answer is "no", it says that
    the full budget answers "yes" and that this budget has not trained enough."""
    lines = []
    for answer in checked:
        verdict = "**yes**" if answer["holds"] else "**no**"
        claim = answer["question"][0].upper() + answer["question"][1:]
        lines.append(f"- {claim}: {verdict} ({answer['detail']}).")
        if not answer["holds"] and budget_name != "full":
            lines.append("  This differs from the full budget, where it holds: these models trained too little to show it.")
    return "## The answers\n\nRead off the tables below; the full budget (README) answers every one with yes.\n\n" + "\n".join(lines) + "\n"


def render(facts: dict, budget: Budget, results: dict, transfer: dict, pca: dict, fids: dict, checked: list[dict]) -> str:
    """The whole report.md."""
    sections = [
        header(facts),
        answers_section(facts["budget"], checked),
        denoising(transfer),
        compression(results, pca, budget.code_sizes),
        superres(results, budget.factors),
        vae(results, fids),
        gan(results, fids),
    ]
    return "\n".join(sections)
