"""The benchmarked models in idiomatic PyTorch: the same layers, losses, optimizers and batches
as the JAX side (jaxae.models, jaxae.objectives), NCHW layout.

Images are stored as uint8 tensors (N, 1, 28, 28) on the device; each step gathers a random batch,
converts it to float32 in [0, 1], applies the corruption and trains. Each builder returns a
`TorchCase` of two closures, `train()` (one optimizer step) and `evaluate()` (one forward pass
without gradients), and the parameter count.

Each case runs as one of three peers (`PEERS`): eager PyTorch, or with the whole train step (batch,
forward, loss, backward, optimizer) and the eval pass under `torch.compile`, in its default mode
or in "max-autotune" (which on CUDA also runs the compiled graphs as CUDA graphs).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

LEAK = 0.2  # the GAN's leaky-ReLU slope
SR_EPS = 1e-3  # jaxae.models.superres.EPS
LOGVAR_BOUND = 15.0  # jaxae.models.vae.LOGVAR_BOUND
# peer -> torch.compile mode (None: eager); "torch.compile max-autotune" is for CUDA devices
PEERS: dict[str, str | None] = {"torch eager": None, "torch.compile": "default", "torch.compile max-autotune": "max-autotune"}


@dataclasses.dataclass
class TorchCase:
    """One benchmark on the PyTorch side: `train()` runs one step, `evaluate()` one eval batch."""

    train: Callable[[], None]
    evaluate: Callable[[], object]
    params: int
    modules: tuple[nn.Module, ...] = ()


def count_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def conv_encoder(code: int, cell: int = 4, width: int = 64) -> nn.Sequential:
    """(N, 1, 28, 28) -> (N, code): pixel-unshuffle to a 7x7 grid, two 3x3 convs, dense."""
    side = 28 // cell
    return nn.Sequential(
        nn.PixelUnshuffle(cell),
        conv3x3(cell * cell, width), nn.ReLU(),
        conv3x3(width, width), nn.ReLU(),
        nn.Flatten(), nn.Linear(side * side * width, code),
    )  # fmt: skip


def conv_decoder(code: int, cell: int = 4, width: int = 64) -> nn.Sequential:
    """(N, code) -> logits (N, 1, 28, 28): dense to 7x7, two 3x3 convs, a sub-pixel conv."""
    side = 28 // cell
    return nn.Sequential(
        nn.Linear(code, side * side * width), nn.ReLU(), nn.Unflatten(1, (width, side, side)),
        conv3x3(width, width), nn.ReLU(),
        conv3x3(width, width), nn.ReLU(),
        conv3x3(width, cell * cell), nn.PixelShuffle(cell),
    )  # fmt: skip


def mlp(sizes: list[int]) -> nn.Sequential:
    """Dense layers of `sizes` with ReLU between them, a linear last layer."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(fan_in, fan_out)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def autoencoder(arch: str, code: int = 30) -> nn.Sequential:
    """jaxae.models.autoencoder.autoencoder: images (N, 1, 28, 28) -> logits of the same shape."""
    if arch == "conv":
        return nn.Sequential(conv_encoder(code), conv_decoder(code))
    return nn.Sequential(nn.Flatten(), mlp([784, 512, 256, code]), mlp([code, 256, 512, 784]), nn.Unflatten(1, (1, 28, 28)))


class SuperResolver(nn.Module):
    """jaxae.models.superres.SuperResolver (blurry input): residual 3x3 convs on a 7x7 grid."""

    def __init__(self, cell: int = 4, width: int = 32, depth: int = 4):
        super().__init__()
        convs = [conv3x3(cell * cell if i == 0 else width, width) for i in range(depth)]
        self.body = nn.Sequential(nn.PixelUnshuffle(cell), *[m for c in convs for m in (c, nn.ReLU())])
        self.head = conv3x3(width, cell * cell)
        nn.init.zeros_(self.head.weight)
        self.shuffle = nn.PixelShuffle(cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x, eps=SR_EPS) + self.shuffle(self.head(self.body(x)))


class VAE(nn.Module):
    """The pytorch/examples VAE, 784-400-20 (one layer for mu and logvar), jaxae's logvar bound."""

    def __init__(self, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), mlp([784, hidden, 2 * latent]))
        self.decoder = mlp([latent, hidden, 784])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, raw = self.encoder(x).chunk(2, dim=-1)
        logvar = LOGVAR_BOUND * torch.tanh(raw / LOGVAR_BOUND)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z).view_as(x), mu, logvar


def generator(latent: int = 100, groups: int = 32) -> nn.Sequential:
    """jaxae.models.gan.DCGANGenerator: (N, latent) -> images (N, 1, 28, 28) in [0, 1]."""
    return nn.Sequential(
        nn.Linear(latent, 7 * 7 * 128), nn.Unflatten(1, (128, 7, 7)),
        nn.GroupNorm(groups, 128), nn.LeakyReLU(LEAK), nn.ConvTranspose2d(128, 64, 4, 2, 1),
        nn.GroupNorm(groups, 64), nn.LeakyReLU(LEAK), nn.ConvTranspose2d(64, 1, 4, 2, 1),
        nn.Sigmoid(),
    )  # fmt: skip


def discriminator() -> nn.Sequential:
    """jaxae.models.gan.DCGANDiscriminator: images (N, 1, 28, 28) -> logits (N, 1)."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(LEAK),
        nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(LEAK),
        nn.Flatten(), nn.Linear(7 * 7 * 128, 1),
    )  # fmt: skip


def sampler(images: torch.Tensor, batch_size: int) -> Callable[[], torch.Tensor]:
    """A random batch of the uint8 `images` as float32 (batch_size, 1, 28, 28) in [0, 1]."""

    def sample() -> torch.Tensor:
        index = torch.randint(images.shape[0], (batch_size,), device=images.device)
        return images[index].float() / 255.0

    return sample


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def traced_optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """`optimizer_step` for torch.compile: the gradients are set to None directly, since Dynamo
    does not trace `Optimizer.zero_grad` and would break the graph there."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None
    loss.backward()
    optimizer.step()


def compiled(fn: Callable, compile_mode: str | None) -> Callable:
    """`fn` itself (eager), or `torch.compile(fn, mode=compile_mode)`."""
    return fn if compile_mode is None else torch.compile(fn, mode=compile_mode)


def supervised_case(model: nn.Module, loss_fn, sample, lr: float, compile_mode: str | None = None) -> TorchCase:
    """A case whose step minimises `loss_fn(model, clean_batch)` with Adam at `lr`; with a
    `compile_mode`, the step and the eval pass are compiled (train/eval mode is set outside)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    update = optimizer_step if compile_mode is None else traced_optimizer_step

    def step():
        update(optimizer, loss_fn(model, sample()))

    def forward() -> torch.Tensor:
        return loss_fn(model, sample())  # returned: a compiled function drops work whose result is unused

    step, forward = compiled(step, compile_mode), compiled(forward, compile_mode)

    def train():
        model.train()
        step()

    @torch.inference_mode()
    def evaluate():
        model.eval()
        return forward()

    return TorchCase(train, evaluate, count_params(model), (model,))


def restoration_loss(corrupt: Callable[[torch.Tensor], torch.Tensor], loss: str):
    """jaxae.objectives.reconstruction: "mse" between sigmoid(model(corrupt(clean))) and clean, or
    "bce" of the logits against the clean grey levels; per-pixel mean."""

    def loss_fn(model, clean):
        logits = model(corrupt(clean))
        if loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, clean)
        return F.mse_loss(torch.sigmoid(logits), clean)

    return loss_fn


def vae_loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """Negative ELBO on a fresh binarization of x: BCE summed over pixels + KL, mean over images."""
    x = torch.bernoulli(x)
    logits, mu, logvar = model(x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = 0.5 * torch.sum(mu.square() + logvar.exp() - 1.0 - logvar)
    return (recon + kl) / x.shape[0]


def gaussian_noise(sigma: float):
    return lambda x: torch.clamp(x + sigma * torch.randn_like(x), 0.0, 1.0)


def blurry(factor: int):
    """Box-filter downsampling, then bicubic upsampling back, clipped to [0, 1]."""
    return lambda x: F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="bicubic").clamp(0.0, 1.0)


def gan_case(
    sample, device: torch.device, batch_size: int, lr: float, b1: float, latent: int, ema_decay: float, compile_mode: str | None = None
) -> TorchCase:
    """The two-phase DCGAN step of jaxae.train.gan.train_step, with the generator's moving
    average updated after each step where ema_decay > 0 (as there); evaluate() generates a batch
    with the average, or the generator itself without one. With a `compile_mode`, both compiled."""
    g, d = generator(latent).to(device), discriminator().to(device)
    g_ema = AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(ema_decay)) if ema_decay > 0 else None
    g_opt = torch.optim.Adam(g.parameters(), lr=lr, betas=(b1, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), lr=lr, betas=(b1, 0.999))
    ones, zeros = torch.ones(batch_size, 1, device=device), torch.zeros(batch_size, 1, device=device)
    update = optimizer_step if compile_mode is None else traced_optimizer_step

    def latents():
        return torch.randn(batch_size, latent, device=device)

    def train():
        real = sample()
        with torch.no_grad():
            fake = g(latents())
        real_logits, fake_logits = d(torch.cat([real, fake])).chunk(2)
        d_loss = F.binary_cross_entropy_with_logits(real_logits, ones) + F.binary_cross_entropy_with_logits(fake_logits, zeros)
        update(d_opt, d_loss)
        d.requires_grad_(False)
        update(g_opt, F.binary_cross_entropy_with_logits(d(g(latents())), ones))
        d.requires_grad_(True)
        if g_ema is not None:
            g_ema.update_parameters(g)

    def generate() -> torch.Tensor:
        return (g if g_ema is None else g_ema)(latents())  # returned: see supervised_case's forward

    modules = (g, d) if g_ema is None else (g, d, g_ema)
    return TorchCase(compiled(train, compile_mode), torch.inference_mode()(compiled(generate, compile_mode)), count_params(g, d), modules)


def set_precision(precision: str) -> None:
    """Float32 matmuls and convolutions on CUDA: "fp32" in full float32, "tf32" in TensorFloat-32
    (cuBLAS and cuDNN alike). CPU matmuls stay float32 either way."""
    tf32 = {"fp32": False, "tf32": True}[precision]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def synchronize(device: torch.device) -> None:
    """Waits for the work queued on `device` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(
    model: str,
    arch: str,
    batch_size: int,
    lr: float,
    images: torch.Tensor,
    device: torch.device,
    compile_mode: str | None = None,
    **options,
) -> TorchCase:
    """The case of jaxae's `model` ("ae", "dae", "sr", "vae", "gan") on uint8 `images` (N, 1, 28, 28),
    eager or with its steps under `torch.compile(mode=compile_mode)` (compiled at their first call).

    `options`: loss (ae, dae, sr: "mse" or "bce"), noise_sigma (dae), factor (sr), latent, b1 and ema_decay (gan).
    """
    sample = sampler(images.to(device), batch_size)
    if model == "gan":
        return gan_case(sample, device, batch_size, lr, options["b1"], options["latent"], options["ema_decay"], compile_mode)
    if model == "vae":
        module, loss = VAE(), vae_loss
    elif model == "sr":
        module, loss = SuperResolver(), restoration_loss(blurry(options["factor"]), options["loss"])
    else:
        corrupt = gaussian_noise(options["noise_sigma"]) if model == "dae" else (lambda x: x)
        module, loss = autoencoder(arch), restoration_loss(corrupt, options["loss"])
    return supervised_case(module.to(device), loss, sample, lr, compile_mode)


def matmul(size: int, device: torch.device) -> Callable[[], None]:
    """One float32 (size, size) matmul (2 * size^3 FLOPs) per call."""
    a = torch.randn(size, size, device=device)
    return lambda: torch.mm(a, a)
