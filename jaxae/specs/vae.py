"""Variational autoencoders (vae): train, test negative ELBO and IWAE log-likelihood, pictures.

With binarization (the default on MNIST) every training batch is a fresh Bernoulli draw of the
grey levels (dynamic binarization) and the likelihood is Bernoulli; the test set is binarized once
with a fixed key, the same for every run, and both test figures use that one binarized set.
Without it the model trains on grey levels (or colour levels) with a Gaussian likelihood (learned
global scale). Every figure is in nats per image, summed over the H x W x C pixel values (and
over the latent units); results.json names the likelihood and the units.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import features, metrics
from jaxae.config import NON_NEGATIVE, POSITIVE_INT, Config, option
from jaxae.data import Split
from jaxae.models.autoencoder import CELL
from jaxae.models.vae import ACTIVATIONS, VAE, HierarchicalVAE, sample
from jaxae.objectives import GRADIENTS, iwae, to_float, vae
from jaxae.outputs import save_grid
from jaxae.registry import ModelSpec, register
from jaxae.runs.common import optimizer
from jaxae.train.evaluate import evaluate, map_examples
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_state_eval_step, make_train_step

# The test set's one binarization: independent of the run's seed, so runs compare on the same data.
TEST_BINARIZATION_KEY = 20140101
PER_CLASS = 1000  # conditional samples per class for conditional_accuracy
LIKELIHOOD_UNITS = {
    "bernoulli": "Bernoulli likelihood of binarized pixels",
    "gaussian": "Gaussian density of levels in [0, 1]; not comparable with Bernoulli nats",
}


@dataclasses.dataclass(frozen=True)
class VAEOptions(features.FeatureOptions):
    """The variational autoencoder's own settings (the feature classifier's for a conditional one)."""

    arch: str = option("mlp", "mlp, or conv (the conv autoencoder's layers: H and W multiples of 4)", choices=("mlp", "conv"))
    hidden: int = option(400, "units of each hidden layer of the mlp encoder and decoder", range=POSITIVE_INT)
    depth: int = option(1, "hidden layers in each mlp (of the first stochastic layer and of the second)", range=POSITIVE_INT)
    activation: str = option("relu", "the mlps' activation, relu or tanh (the IWAE paper's)", choices=ACTIVATIONS)
    latent: int = option(20, "latent units (of the first stochastic layer)", range=POSITIVE_INT)
    stochastic_layers: int = option(1, "stochastic layers: 1, or 2 (q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1); mlp only)", choices=(1, 2))
    latent2: int = option(50, "latent units of the second stochastic layer", range=POSITIVE_INT)
    hidden2: int = option(100, "units of each hidden layer between the two stochastic layers", range=POSITIVE_INT)
    objective: str = option(
        "elbo",
        "training objective: elbo (one code), iwae (the importance-weighted bound of --iwae-samples codes), "
        "or elbo_k (the ELBO averaged over --iwae-samples codes: the IWAE paper's VAE rows)",
        choices=("elbo", "iwae", "elbo_k"),
    )
    iwae_samples: int = option(5, "codes per image of the iwae and elbo_k objectives", range=POSITIVE_INT)
    gradient: str = option("standard", "the iwae objective's gradient: standard, or dreg (doubly reparameterized)", choices=GRADIENTS)
    beta: float = option(1.0, "weight of the KL term in the training loss (beta-VAE)", range=NON_NEGATIVE)
    kl_warmup_epochs: float = option(0.0, "epochs over which the KL term's weight rises linearly from 0 to beta", range=NON_NEGATIVE)
    binarize: bool | None = option(
        None, "dynamic binarization with a Bernoulli likelihood (default: on for mnist; off: a Gaussian likelihood of grey levels)"
    )
    nll_samples: int = option(0, "importance samples for the test log-likelihood (0: skip it)", range=NON_NEGATIVE, resumable=True)
    conditional: bool = option(
        False,
        "condition the encoder and the decoder on the labels (needs labelled data; "
        "the cvae recipe adds --beta 2, so that samples show their class)",
    )


def uses_binarization(config: Config) -> bool:
    """The binarize option, where None means on for MNIST and off for other datasets."""
    binarize = config.options.binarize
    return config.dataset == "mnist" if binarize is None else binarize


def build_model(config: Config, info):
    """The configured model for the data: a `VAE` (one stochastic layer) or a `HierarchicalVAE`;
    Bernoulli likelihood on binarized data, Gaussian on levels."""
    o = config.options
    likelihood = "bernoulli" if uses_binarization(config) else "gaussian"
    widths = o.hidden if o.depth == 1 else (o.hidden,) * o.depth
    if o.stochastic_layers == 2:
        hidden = ((o.hidden,) * o.depth, (o.hidden2,) * o.depth)
        return HierarchicalVAE(
            info.image_shape, latents=(o.latent, o.latent2), hidden=hidden, activation=o.activation, likelihood=likelihood
        )
    num_classes = info.num_classes if o.conditional else None
    return VAE(
        info.image_shape,
        latent=o.latent,
        hidden=widths,
        arch=o.arch,
        likelihood=likelihood,
        activation=o.activation,
        num_classes=num_classes,
    )


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    """The freshly initialised TrainState of the configured model (also a restore template)."""
    example = jnp.zeros((1, *info.image_shape))
    labels = (jnp.zeros((1,), jnp.int32),) if config.options.conditional else ()
    return create_train_state(build_model(config, info), optimizer(config, steps_per_epoch), key, example, key, *labels)


def objective(config: Config, info, dynamic_binarization: bool):
    """The training objective: the ELBO with the KL in closed form (one stochastic layer), else the
    importance-weighted bound or the k-sample ELBO (k = 1 for the ELBO of two layers), warm-up in
    steps."""
    o = config.options
    warmup = round(o.kl_warmup_epochs * (info.train_size // config.batch_size))
    if o.objective == "elbo" and o.stochastic_layers == 1:
        return vae(o.beta, dynamic_binarization, warmup, o.conditional)
    k = 1 if o.objective == "elbo" else o.iwae_samples
    bound = "iwae" if o.objective == "iwae" else "elbo"
    return iwae(k, o.gradient, o.beta, warmup, dynamic_binarization, bound)


def train_step(config: Config, info):
    return make_train_step(objective(config, info, uses_binarization(config)), config.micro_batches, with_step=True)


def eval_step(config: Config, info):
    return make_state_eval_step(objective(config, info, dynamic_binarization=False))


def binarize_once(images: np.ndarray) -> np.ndarray:
    """uint8 grey-level images -> uint8 {0, 255} images, one Bernoulli draw with a fixed key.

    It draws with `jax.random.bernoulli`, not training's `binarize`, so that the binarized test
    set, and the log-likelihoods reported on it, stay those of earlier runs.
    """
    key = jax.random.fold_in(jax.random.key(0), TEST_BINARIZATION_KEY)
    return np.asarray(jax.random.bernoulli(key, to_float(jnp.asarray(images)))).astype(np.uint8) * 255


def test_split(config: Config, data) -> Split:
    """The test split the VAE is scored on: binarized once (fixed key) where it trains binarized."""
    if not uses_binarization(config):
        return data.test
    loaded = data.test.load()
    return Split({**loaded, "image": binarize_once(loaded["image"])})


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    """test_neg_elbo, test_recon, test_kl (one reparameterized sample per test image; for the iwae
    objective also test_neg_iwae with its samples), test_nll (IWAE with nll_samples samples; null
    when 0), all in nats per image summed over the pixel values; the likelihood and its units,
    nll_seconds; for a conditional VAE the conditional_accuracy of its samples."""
    o = config.options
    test = test_split(config, data)
    elbo_key, nll_key = jax.random.split(key)
    # The test set is already binarized (or grey): no binarization at evaluation.
    scores = evaluate(
        make_eval_step(objective(config, data.info, dynamic_binarization=False), state.apply_fn), state.params, test, elbo_key
    )
    model = build_model(config, data.info)
    nll, nll_seconds = None, 0.0
    if o.nll_samples > 0:
        start = time.perf_counter()
        nll = metrics.iwae_nll(model, state.params, to_float(jnp.asarray(test.load()["image"])), nll_key, o.nll_samples)
        nll_seconds = time.perf_counter() - start
    values = math.prod(data.image_shape)
    results = {
        "test_neg_elbo": scores["neg_elbo"],
        "test_recon": scores["recon"],
        "test_kl": scores["kl"],
        "test_nll": nll,
        "nll_samples": o.nll_samples,
        "nll_seconds": nll_seconds,
        "elbo_samples": 1,
        "train_neg_elbo_last_epoch": history[-1]["neg_elbo"],
        "likelihood": model.likelihood,
        "binarized": uses_binarization(config),
        "units": f"nats per image, summed over {values} pixel values ({LIKELIHOOD_UNITS[model.likelihood]})",
    }
    if o.objective != "elbo":
        results.update(test_neg_iwae=scores["neg_iwae"], iwae_samples=o.iwae_samples)
    if o.conditional:
        asked = np.repeat(np.arange(data.num_classes, dtype=np.int32), PER_CLASS)
        samples = jax.jit(sample, static_argnums=(1, 3))(state.params, model, jax.random.fold_in(key, 2), len(asked), asked)
        net = features.network_for(config, data)
        results.update(conditional_accuracy=features.conditional_accuracy(net, samples, asked), **net.describe())
    return results


def _posterior_mean(model, params, batch, key):
    return model.apply({"params": params}, to_float(batch["image"]), method="encode")[0]


def _latent_grid(side: int = 15) -> np.ndarray:
    """(side*side, 2) codes at the prior's quantiles 0.05 ... 0.95, row-major, z[1] decreasing down."""
    quantiles = np.array([NormalDist().inv_cdf(q) for q in np.linspace(0.05, 0.95, side)], np.float32)
    return np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)


def pictures(config: Config, state, data, key: jax.Array, folder, history: list[dict]) -> None:
    """samples.png (10x10 prior samples; a conditional VAE's, a row of 10 per class),
    reconstructions.png (rows of test images, then their reconstructions from the posterior
    mean); for a 2-unit latent also latent_grid.png (decoded codes on a 15x15 grid of prior
    quantiles) and latent_scatter.png (test posterior means, by label where the data has labels)."""
    model, params, test = build_model(config, data.info), state.params, test_split(config, data)
    shown = test.gather(np.arange(min(20, len(test))))
    conditional = config.options.conditional
    asked = np.repeat(np.arange(data.num_classes, dtype=np.int32), 10) if conditional else None
    count = 100 if asked is None else len(asked)
    labels = (jnp.asarray(shown["label"]),) if conditional else ()
    originals = to_float(jnp.asarray(shown["image"]))
    samples = jax.jit(sample, static_argnums=(1, 3))(params, model, key, count, asked)
    restored = model.apply({"params": params}, originals, *labels, method="reconstruct")
    save_grid(folder / "samples.png", list(np.asarray(samples).reshape(-1, 10, *samples.shape[1:])))
    save_grid(folder / "reconstructions.png", [originals[:10], restored[:10], originals[10:], restored[10:]])
    if model.latent == 2 and not conditional:
        decoded = jax.nn.sigmoid(model.apply({"params": params}, jnp.asarray(_latent_grid()), method="decode"))
        save_grid(folder / "latent_grid.png", list(np.asarray(decoded).reshape(15, 15, *decoded.shape[1:])))
        codes = map_examples(functools.partial(_posterior_mean, model), params, test)
        _scatter(codes, test.labels, folder / "latent_scatter.png")


def _scatter(codes: np.ndarray, labels: np.ndarray | None, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=2)
    else:
        classes = int(np.max(labels)) + 1
        points = ax.scatter(
            codes[:, 0], codes[:, 1], c=labels, cmap="tab10" if classes <= 10 else "viridis", s=2, vmin=-0.5, vmax=classes - 0.5
        )
        fig.colorbar(points, ax=ax, ticks=range(classes), label="label")
    ax.set(xlabel="z[0] (posterior mean)", ylabel="z[1] (posterior mean)", title="test codes")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def check(config: Config) -> None:
    o = config.options
    if o.stochastic_layers == 2 and (o.arch != "mlp" or o.conditional):
        raise ValueError("two stochastic layers are built of mlps and are not conditional: use --arch mlp without --conditional")
    if o.objective == "elbo_k" and o.gradient == "dreg":
        raise ValueError("dreg is the iwae objective's gradient: use --gradient standard with --objective elbo_k")
    if o.conditional and (o.objective != "elbo" or o.nll_samples):
        raise ValueError("a conditional VAE trains on the ELBO and has no IWAE log-likelihood: use --objective elbo and --nll-samples 0")


def check_data(config: Config, info) -> None:
    height, width, _ = info.image_shape
    if config.options.arch == "conv" and (height % CELL or width % CELL):
        raise ValueError(f"the conv VAE needs H and W multiples of {CELL}, got {height}x{width}: use --arch mlp, or crop or pad the images")


register(
    ModelSpec(
        name="vae",
        summary="variational autoencoder: ELBO or IWAE training, IWAE log-likelihood, samples from the prior",
        options=VAEOptions,
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        evaluate=evaluate_run,
        pictures=pictures,
        check=check,
        check_data=check_data,
        needs_labels=lambda config: config.options.conditional,
        defaults={"dataset": "mnist", "epochs": 10, "batch_size": 32, "learning_rate": 3e-3},
    )
)
