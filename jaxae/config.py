"""Run configuration: one frozen dataclass for every model, and the `tiny` variant used by tests."""
from __future__ import annotations

import dataclasses

MODELS = ("ae", "dae", "sr", "vae", "gan")
DATASETS = ("mnist", "fashion_mnist")
ARCHS = ("mlp", "conv")
PARALLEL = ("jit", "pmap")  # jaxae.train.parallel: jit over a Mesh (default), or jax.pmap


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run. Fields a model does not use are ignored by it.

    Sizes are in units (code_size, latent, hidden), images (batch_size) and epochs. `train_size`
    and `test_size` take the first n images of a split (None: all of it), for quick runs.
    """

    model: str = "ae"
    arch: str = "conv"
    dataset: str = "fashion_mnist"
    code_size: int = 30
    noise: str = "gaussian:0.2"  # dae: KIND:LEVEL, see jaxae.noise.Noise
    factor: int = 2  # sr: downsampling factor
    sr_input: str = "blurry"  # sr: "blurry" (upsampled back to HxH) or "lowres" (l x l, upsampled in the net)
    hidden: int = 400  # vae: hidden width
    latent: int = 20  # vae, gan: latent units
    beta: float = 1.0  # vae: weight of the latent (KL) loss
    binarize: bool | None = None  # vae: dynamic binarization; None = on for mnist
    nll_samples: int = 0  # vae: importance samples for the test log-likelihood (0: skip)
    ema_decay: float = 0.0  # gan: samples come from a moving average of the generator with this decay per step (0: none)
    r1: float = 0.0  # gan: weight of the discriminator's R1 gradient penalty on real images (0: none)
    r1_every: int = 1  # gan: the R1 penalty on every r1_every-th step only, weighted r1 * r1_every (lazy R1)
    loss: str | None = None  # ae, dae, sr: reconstruction loss, mse or bce; None: see training_loss
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    adam_b1: float = 0.9  # Adam's first-moment decay (gan: 0.5, DCGAN's)
    schedule: str = "cosine"  # cosine (decay to 0 over the run) or constant
    seed: int = 0
    train_size: int | None = None
    test_size: int | None = None
    steps_per_dispatch: int = 64
    progress: bool = True
    resume: bool = False  # continue from the latest checkpoint in the workdir
    checkpoint_every: int = 0  # steps between checkpoints within an epoch (0: only at each epoch's end)
    parallel: str = "jit"  # data parallelism over all devices: "jit" (a Mesh) or "pmap"; same numbers
    micro_batches: int = 1  # >1: gradients summed in a fixed order over that many pieces of each batch (jit only)

    def __post_init__(self):
        for name, allowed in (("model", MODELS), ("dataset", DATASETS), ("arch", ARCHS), ("parallel", PARALLEL)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: use one of {', '.join(allowed)}")
        for name in ("code_size", "latent", "hidden", "epochs", "batch_size", "factor", "steps_per_dispatch", "micro_batches", "r1_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be 0 (epoch ends only) or a number of steps, got {self.checkpoint_every}")
        if self.r1 < 0:
            raise ValueError(f"r1 must be 0 (no penalty) or positive, got {self.r1}")
        for name in ("ema_decay", "adam_b1"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.batch_size % self.micro_batches:
            raise ValueError(f"batch_size {self.batch_size} does not split into {self.micro_batches} micro-batches: use a multiple")
        if self.micro_batches > 1 and self.parallel != "jit":
            raise ValueError("micro_batches needs parallel jit (the default)")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}: use cosine or constant")

    @property
    def training_loss(self) -> str:
        """`loss`, or where unset: "bce" for the ae/dae on MNIST, else "mse".

        On MNIST's mostly black digits, MSE through the sigmoid drives every logit towards -inf
        within ten steps (the all-black image); there its gradient vanishes and training stalls at
        test MSE 0.11. BCE keeps a gradient of -1 on the white pixels and trains normally.
        """
        if self.loss is not None:
            return self.loss
        return "bce" if self.model in ("ae", "dae") and self.dataset == "mnist" else "mse"

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# What each model uses where the user says nothing; everything else comes from Config's defaults.
MODEL_DEFAULTS = {
    "ae": {},
    "dae": {},
    "sr": {"epochs": 10},
    "vae": {"arch": "mlp", "dataset": "mnist", "epochs": 10, "batch_size": 32, "learning_rate": 3e-3},
    "gan": {
        "dataset": "mnist",
        "epochs": 10,
        "batch_size": 64,
        "learning_rate": 2e-4,
        "adam_b1": 0.5,
        "schedule": "constant",
        "latent": 100,
        "steps_per_dispatch": 8,  # its convolutions run unrolled, see jaxae.train.parallel.make_multi_step
    },
}


def with_defaults(saved: dict) -> dict:
    """A saved config dict with each field it lacks (written before the field existed) set to
    that field's default for the saved model (MODEL_DEFAULTS, else Config's)."""
    model_defaults = MODEL_DEFAULTS.get(saved.get("model", Config.model), {})
    return {**{f.name: f.default for f in dataclasses.fields(Config)}, **model_defaults, **saved}


def config_differences(saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Sorted names of the fields whose values differ between two config dicts, except `ignore`.
    A field missing from `saved` counts as its default (`with_defaults`), so runs made before a
    new option was added stay comparable."""
    filled = with_defaults(saved)
    return sorted(k for k in set(saved) | set(current) if k not in ignore and filled.get(k) != current.get(k))


def make_config(model: str = "ae", **options) -> Config:
    """A Config for `model`: its MODEL_DEFAULTS, overridden by `options`."""
    if model not in MODEL_DEFAULTS:
        raise ValueError(f"unknown model {model!r}: use one of {', '.join(MODELS)}")
    return Config(model=model, **{**MODEL_DEFAULTS[model], **options})


def tiny(model: str = "ae", **options) -> Config:
    """A run of a few seconds on CPU: small subsets, one epoch, no progress bar."""
    small = dict(epochs=1, batch_size=32, train_size=256, test_size=64, steps_per_dispatch=4, progress=False)
    return make_config(model, **{**small, **options})
