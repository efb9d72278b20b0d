"""GAN runs: train the DCGAN ("conv") or MLP GAN, score samples by FID, draw progress pictures.

FID is measured in the features of the project's own classifier for the dataset
(jaxae.features; named in results.json), between len(test) generated images and the test split.
`fid_floor` is the same distance between as many training images (a random subset) and the test
split: what a perfect generator of the data distribution would score on this network. With
config.ema_decay > 0, samples, pictures and `fid` come from the generator's moving average (see
jaxae.train.gan) and `fid_without_ema` scores the trained generator itself, for comparison.
"""
from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np

from jaxae import features
from jaxae.config import Config
from jaxae.models.gan import gan
from jaxae.outputs import save_grid
from jaxae.runs.common import RunDir, fit_options, load_split, optimizer, run_keys, timings_and_sizes
from jaxae.train.gan import create_gan_state, generate, sample_images, sample_latents, train_step
from jaxae.train.loop import fit

PICTURE_SIDE = 8  # samples_epoch_XX.png shows PICTURE_SIDE x PICTURE_SIDE samples


def plot_losses(history: list[dict], path: Path) -> None:
    """losses.png: d_loss and g_loss (nats), and the discriminator's accuracies, per log point."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (losses, accuracy) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("d_loss", "g_loss"):
        losses.plot(epochs, [r[name] for r in history], marker="o", label=name)
    for name in ("d_real_acc", "d_fake_acc"):
        accuracy.plot(epochs, [r[name] for r in history], marker="o", label=name)
    losses.set(xlabel="epoch", ylabel="BCE (nats, epoch mean)", title="GAN losses")
    accuracy.set(xlabel="epoch", ylabel="discriminator accuracy", ylim=(0, 1.02), title="discriminator")
    for ax in (losses, accuracy):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def train_and_evaluate(config: Config, run: RunDir) -> dict:
    """Trains the configured GAN; writes run.path/{metrics.jsonl, results.json, losses.png,
    samples_epoch_XX.png (a fixed latent batch after each epoch)}.

    results.json: fid, fid_floor, feature_network, classifier_accuracy, the last epoch's mean
    d_loss / g_loss / discriminator accuracies, timings (and fid_without_ema with a moving
    average). `loss` in metrics.jsonl is d_loss + g_loss.
    """
    keys = run_keys(config)
    train_images, _ = load_split(config, "train")
    test_images, _ = load_split(config, "test")
    generator, discriminator = gan(config.arch)
    steps_per_epoch = len(train_images) // config.batch_size
    state = create_gan_state(
        generator,
        discriminator,
        optimizer(config, steps_per_epoch),
        optimizer(config, steps_per_epoch),
        keys["init"],
        config.latent,
        train_images.shape[1:],
        config.ema_decay,
        config.micro_batches,
        config.r1,
        config.r1_every,
    )
    state = run.start(state)
    fixed_latents = sample_latents(keys["pictures"], PICTURE_SIDE**2, config.latent)
    draw = jax.jit(functools.partial(generate, averaged=True))

    def on_log(state, record):
        run.log(state, record)
        samples = np.asarray(draw(state, fixed_latents)).reshape(PICTURE_SIDE, PICTURE_SIDE, *train_images.shape[1:])
        save_grid(run.path / f"samples_epoch_{record['epoch']:02d}.png", list(samples))

    result = fit(
        state,
        train_step,
        train_images,
        key=keys["train"],
        **run.fit_hooks(on_log),
        **fit_options(config),
    )
    history = run.history()
    plot_losses(history, run.path / "losses.png")
    sample_key, floor_key = jax.random.split(keys["eval"])
    generated = sample_images(result.state, sample_key, len(test_images))
    last = history[-1]
    results = {
        **features.sample_scores(config.dataset, generated, train_images, test_images, floor_key),
        **{name: last[name] for name in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc", "d_r1") if name in last},
        **timings_and_sizes(result, len(train_images), len(test_images)),
    }
    if config.ema_decay > 0:
        trained_generator = sample_images(result.state, sample_key, len(test_images), averaged=False)
        results["fid_without_ema"] = features.fid(config.dataset, trained_generator, test_images)
    return run.finish(results)
