"""The lesson's answers, read off the report's tables as checks that hold or not.

Each answer is {"question": str, "holds": bool, "detail": str}; the full budget's runs (README)
answer every question "yes", so a quick budget whose answer is "no" has not trained enough.
"""

from __future__ import annotations

from jaxae.report.plan import DATASETS, NOISES, noise_kind

SR_GAIN_DB = 2.0
VAE_NEG_ELBO = 102.0
GAN_TO_VAE_FID = 0.8


def answers(results: dict, transfer: dict, pca: dict, fids: dict) -> list[dict]:
    """Every answer the report gives, in the order of its sections."""
    psnr = {name: dict(zip(transfer["columns"], row)) for name, row in transfer["rows"].items()}
    checks = [_denoisers(psnr)]
    on_mask = psnr["dae_fashion_mnist_gaussian"]["fashion_mnist/mask"], psnr["dae_fashion_mnist_mask"]["fashion_mnist/mask"]
    checks.append(
        _answer(
            "the gaussian-trained Fashion-MNIST denoiser is worse on missing pixels than the mask-trained one",
            on_mask[0] < on_mask[1],
            f"{on_mask[0]:.2f} against {on_mask[1]:.2f} dB",
        )
    )
    on_clothes = psnr["dae_mnist_gaussian"]["fashion_mnist/gaussian"], psnr["dae_fashion_mnist_gaussian"]["fashion_mnist/gaussian"]
    checks.append(
        _answer(
            "the digits-trained denoiser is worse on clothes than the clothes-trained one",
            on_clothes[0] < on_clothes[1],
            f"{on_clothes[0]:.2f} against {on_clothes[1]:.2f} dB",
        )
    )
    checks += [_compression(results, pca), _digits_compress_better(results), _superres(results), _vae(results), _gan(results, fids)]
    return checks


def _answer(question: str, holds: bool, detail: str) -> dict:
    return {"question": question, "holds": bool(holds), "detail": detail}


def _denoisers(psnr: dict) -> dict:
    margins = {}
    for dataset in DATASETS:
        for noise in NOISES:
            name, column = f"dae_{dataset}_{noise_kind(noise)}", f"{dataset}/{noise_kind(noise)}"
            margins[name] = psnr[name][column] - max(psnr["noisy input"][column], psnr["best gaussian blur"][column])
    worst = min(margins, key=margins.get)
    return _answer(
        "each denoiser beats both the noisy input and the best gaussian blur on its own noise and data",
        margins[worst] > 0,
        f"smallest margin {margins[worst]:+.2f} dB ({worst})",
    )


def _compression(results: dict, pca: dict) -> dict:
    ratios = {
        f"{d} {size}": results[f"ae_{d}_code{size}"]["test_mse"] / pca[f"{d}_code{size}"]["mse"] for d in DATASETS for size in (16, 30)
    }
    worst = max(ratios, key=ratios.get)
    return _answer(
        "the autoencoder beats PCA at 16 and 30 units on both datasets",
        ratios[worst] < 1,
        f"largest autoencoder / PCA MSE ratio {ratios[worst]:.2f} ({worst} units)",
    )


def _digits_compress_better(results: dict) -> dict:
    digits, clothes = results["ae_mnist_code16"]["test_mse"], results["ae_fashion_mnist_code16"]["test_mse"]
    return _answer("digits have the lower 16-unit error", digits < clothes, f"MSE {digits:.4f} against {clothes:.4f}")


def _superres(results: dict) -> dict:
    gains = {d: results[f"sr_{d}_x2"]["test_psnr"] - results[f"sr_{d}_x2"]["bicubic_psnr"] for d in DATASETS}
    worst = min(gains, key=gains.get)
    return _answer(
        f"super-resolution x2 gains at least {SR_GAIN_DB:g} dB over bicubic on both datasets",
        gains[worst] >= SR_GAIN_DB,
        f"smallest gain {gains[worst]:+.2f} dB ({worst})",
    )


def _vae(results: dict) -> dict:
    value = results["vae_mnist"]["test_neg_elbo"]
    return _answer(
        f"the VAE on binarized MNIST reaches a test -ELBO of at most {VAE_NEG_ELBO:g} nats", value <= VAE_NEG_ELBO, f"{value:.2f} nats"
    )


def _gan(results: dict, fids: dict) -> dict:
    ratios = {d: results[f"gan_{d}"]["fid"] / fids[d] for d in DATASETS}
    worst = max(ratios, key=ratios.get)
    return _answer(
        f"each GAN's FID is below {GAN_TO_VAE_FID:g} times the VAE's FID on the same dataset",
        ratios[worst] < GAN_TO_VAE_FID,
        f"largest GAN / VAE FID ratio {ratios[worst]:.2f} ({worst})",
    )
