"""GANs (gan): train the DCGAN ("conv") or MLP GAN, score samples by FID, draw progress pictures.

FID is measured in the features of the project's own classifier for the dataset
(jaxae.features; named in results.json), between len(test) generated images and the test split.
`fid_floor` is the same distance between as many training images (a random subset) and the test
split: what a perfect generator of the data distribution would score on this network. With
ema_decay > 0, samples, pictures and `fid` come from the generator's moving average (see
jaxae.train.gan) and `fid_without_ema` scores the trained generator itself, for comparison.
Without labels there is no classifier: results.json then says why it has no FID.

A conditional GAN (`--conditional`) generates the test split's labels for its FID, and
`conditional_accuracy` is the share of 1000 samples per class that the classifier assigns to the
class asked for; its pictures have one row per class.

The defaults are the settings that scored best in 10 epochs on MNIST (README): Adam 1.2e-3 with
b1 0, the R1 penalty 1 applied lazily on every 4th step, and samples from a 0.999 moving average.
The DCGAN paper's settings are the recipe `dcgan_paper`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxae import features
from jaxae.config import FRACTION, NON_NEGATIVE, POSITIVE_INT, Config, option
from jaxae.models.gan import gan
from jaxae.outputs import save_grid
from jaxae.registry import ModelSpec, register
from jaxae.runs.common import optimizer
from jaxae.train.gan import GANSettings, create_gan_state, generate, make_train_step, sample_images, sample_latents

PICTURE_SIDE = 8  # samples_epoch_XX.png shows PICTURE_SIDE x PICTURE_SIDE samples (a row per class if conditional)
PER_CLASS = 1000  # conditional samples per class for conditional_accuracy


@dataclasses.dataclass(frozen=True)
class GANOptions(features.FeatureOptions):
    """The GAN's own settings."""

    arch: str = option("conv", "conv (the DCGAN: H and W multiples of 4) or mlp", choices=("conv", "mlp"))
    latent: int = option(100, "latent units of the generator's input", range=POSITIVE_INT)
    ema_decay: float = option(
        0.999, "sample from a moving average of the generator with this decay per step (0: the trained generator)", range=FRACTION
    )
    r1: float = option(
        1.0, "R1 penalty (GAMMA/2) E||grad_x D(x)||^2 on real images in the discriminator's loss (0: none)", range=NON_NEGATIVE
    )
    r1_every: int = option(4, "apply the R1 penalty on every N-th step only, N times as strong (lazy R1)", range=POSITIVE_INT)
    conditional: bool = option(False, "condition the generator and the discriminator on the labels (needs labelled data)")


def settings(config: Config) -> GANSettings:
    o = config.options
    return GANSettings(o.latent, o.ema_decay, config.micro_batches, o.r1, o.r1_every, o.conditional)


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    generator, discriminator = gan(config.options.arch, info.image_shape, info.num_classes if config.options.conditional else None)
    tx = optimizer(config, steps_per_epoch)
    return create_gan_state(generator, discriminator, tx, tx, key, settings(config), info.image_shape)


def train_step(config: Config, info):
    return make_train_step(settings(config))


def eval_step(config: Config, info):
    """Generates as many images as the batch holds (with its labels where conditional)."""
    latent, conditional = config.options.latent, config.options.conditional

    def step(state, batch, key):
        labels = batch["label"] if conditional else None
        return generate(state, sample_latents(key, batch["image"].shape[0], latent), labels, averaged=True)

    return step


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


def picture_labels(config: Config, info) -> np.ndarray | None:
    """The labels of the progress pictures' rows (a row per class), None if unconditional."""
    if not config.options.conditional:
        return None
    return np.repeat(np.arange(info.num_classes, dtype=np.int32), PICTURE_SIDE)


def on_epoch(config: Config, state, record: dict, info, key: jax.Array, folder: Path) -> None:
    """samples_epoch_XX.png: the same latents (drawn from `key`) after every epoch."""
    labels = picture_labels(config, info)
    count = PICTURE_SIDE**2 if labels is None else len(labels)
    samples = sample_images(state, key, count, config.options.latent, labels)
    rows = samples.reshape(-1, PICTURE_SIDE, *samples.shape[1:])
    save_grid(folder / f"samples_epoch_{record['epoch']:02d}.png", list(rows))


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    """fid, fid_floor, feature_network, classifier_accuracy (null with fid_skipped where the data
    has no labels), conditional_accuracy for a conditional GAN, the last epoch's mean d_loss /
    g_loss / discriminator accuracies (and fid_without_ema with a moving average)."""
    sample_key, floor_key = jax.random.split(key)
    test = data.test.load()
    labels = test["label"] if config.options.conditional else None
    generated = sample_images(state, sample_key, len(data.test), config.options.latent, labels)
    last = history[-1]
    results = {name: last[name] for name in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc", "d_r1") if name in last}
    if data.classes is None:
        return {**results, "fid": None, "fid_skipped": f"{data.name} has no labels, so there is no classifier to take FID features from"}
    net = features.network_for(config, data)
    results.update(features.sample_scores(net, generated, data.train, test["image"], floor_key))
    if config.options.ema_decay > 0:
        trained_generator = sample_images(state, sample_key, len(data.test), config.options.latent, labels, averaged=False)
        results["fid_without_ema"] = net.fid(trained_generator, test["image"])
    if config.options.conditional:
        asked = np.repeat(np.arange(data.num_classes, dtype=np.int32), PER_CLASS)
        samples = sample_images(state, jax.random.fold_in(key, 2), len(asked), config.options.latent, asked)
        results["conditional_accuracy"] = features.conditional_accuracy(net, samples, asked)
    return results


def pictures(config: Config, state, data, key: jax.Array, folder: Path, history: list[dict]) -> None:
    """losses.png (the per-epoch samples are drawn by `on_epoch`)."""
    plot_losses(history, folder / "losses.png")


def check_data(config: Config, info) -> None:
    height, width, _ = info.image_shape
    if config.options.arch == "conv" and (height % 4 or width % 4):
        raise ValueError(f"the DCGAN needs H and W multiples of 4, got {height}x{width}: use --arch mlp, or crop or pad the images")


register(
    ModelSpec(
        name="gan",
        summary="generative adversarial network: two-phase BCE training, scored by FID",
        options=GANOptions,
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        evaluate=evaluate_run,
        pictures=pictures,
        on_epoch=on_epoch,
        check_data=check_data,
        needs_labels=lambda config: config.options.conditional,
        unroll=lambda config: config.options.arch == "conv",  # nn.Conv gradients run far faster unrolled on XLA:CPU
        defaults={
            "dataset": "mnist",
            "epochs": 10,
            "batch_size": 64,
            "learning_rate": 1.2e-3,
            "adam_b1": 0.0,
            "schedule": "constant",
            "steps_per_dispatch": 8,
        },
        absent={"adam_b1": 0.5, "ema_decay": 0.0, "r1": 0.0, "r1_every": 1},
    )
)
