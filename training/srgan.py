"""The SRGAN stage: a pretrained generator against a discriminator (``train sr --stage gan``).

Each iteration updates the discriminator once (real HR patches -> 1, generated -> 0,
binary cross-entropy on logits) and then the generator through it:
lambda_perceptual * MSE of VGG19 relu5_4 features + lambda_adv * BCE(D(G(lr)), 1)
+ lambda_pixel * L1. Mixed precision (bf16) on CUDA.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared.models import get_model
from latentwire.training import distributed
from latentwire.training.adversarial import fit_adversarial
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.sr import (
    TrainConfig,
    build_generator,
    evaluate_generator,
    load_data,
    save_samples,
)

log = logging.getLogger("latentwire.train")

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's name for the ImageNet weights
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """VGG19 up to relu5_4, on [0, 1] RGB input; frozen."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchvision.models import vgg19

        state = torch.load(weights, map_location="cpu", weights_only=True)
        # Only the convolutional part is used; a file may hold just that (features.*).
        features = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        if not features:
            raise RuntimeError(f"{weights}: not a torchvision VGG19 state dict")
        layers = vgg19(weights=None).features
        layers.load_state_dict(features)
        self.features = layers[:36].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The paper rescales the feature maps by 1/12.75 so the loss is comparable to MSE.
        return self.features((x - self.mean) / self.std) / 12.75


def find_vgg_weights(explicit: str | None) -> Path | None:
    """``--vgg-weights``, else torchvision's cache; never a download."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise RuntimeError(f"--vgg-weights {path}: no such file")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return cached if cached.is_file() else None


def perceptual_setup(cfg: TrainConfig) -> tuple[float, Path | None]:
    """(lambda_perceptual, weights); refuses to start when the loss is wanted but impossible."""
    weights = find_vgg_weights(cfg.vgg_weights)
    if cfg.lambda_perceptual == 0:
        return 0.0, None
    if weights is None:
        raise RuntimeError(
            "the perceptual loss needs VGG19 ImageNet weights: pass --vgg-weights PATH "
            f"(torchvision's {VGG19_FILE}) or put them in {torch.hub.get_dir()}/checkpoints; "
            "or train without it with --lambda-perceptual 0"
        )
    return (1.0 if cfg.lambda_perceptual is None else cfg.lambda_perceptual), weights


def discriminator_loss(d: nn.Module, hr: torch.Tensor, sr: torch.Tensor) -> torch.Tensor:
    """Real HR patches are labelled 1, generated ones 0.

    Both go through the discriminator as one batch: with separate calls, its batch norm
    would normalize each set by its own statistics and erase much of what tells them apart.
    """
    real, fake = d(torch.cat([hr, sr])).chunk(2)
    bce = F.binary_cross_entropy_with_logits
    return bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))


def generator_loss(
    d: nn.Module,
    vgg: nn.Module | None,
    sr: torch.Tensor,
    hr: torch.Tensor,
    cfg: TrainConfig,
    lambda_perceptual: float,
) -> torch.Tensor:
    """Fool the discriminator, stay close to HR in VGG features and in pixels."""
    judged = d(sr)
    loss = cfg.lambda_adv * F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
    loss = loss + cfg.lambda_pixel * F.l1_loss(sr, hr)
    if vgg is not None and lambda_perceptual:
        loss = loss + lambda_perceptual * F.mse_loss(vgg(sr), vgg(hr))
    return loss


def train_gan(cfg: TrainConfig) -> nn.Module:
    if not cfg.init and not cfg.resume:
        raise ValueError("--stage gan starts from a pretrained generator: pass --init CHECKPOINT")
    lambda_perceptual, vgg_weights = perceptual_setup(cfg)
    runtime = distributed.setup(cfg.device)
    try:
        return _train(cfg, runtime, lambda_perceptual, vgg_weights)
    finally:
        distributed.teardown(runtime)


def _train(cfg: TrainConfig, runtime, lambda_perceptual: float, vgg_weights) -> nn.Module:
    device, out = runtime.device, Path(cfg.out)
    train_set, val_set = load_data(cfg)
    torch.manual_seed(cfg.seed)
    generator = build_generator(cfg).to(device)
    discriminator = get_model("srgan-discriminator", widths=cfg.d_widths).to(device)
    vgg = VGGFeatures(vgg_weights).to(device) if vgg_weights else None
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(0.9, 0.999))
    if not cfg.resume or latest_checkpoint(out) is None:
        generator.load_state_dict(load_checkpoint(cfg.init, map_location=device)["model"])
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")

    def step(g: nn.Module, d: nn.Module, batch) -> tuple[float, float]:
        lr, hr = (t.to(device, non_blocking=True) for t in batch)
        with autocast:
            sr = g(lr)
            d_loss = discriminator_loss(d, hr, sr.detach())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with autocast:
            g_loss = generator_loss(d, vgg, sr, hr, cfg, lambda_perceptual)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return d_loss.item(), g_loss.item()

    def end_of_epoch(generator: nn.Module, epoch: int) -> dict[str, float]:
        val = evaluate_generator(generator, val_set, device, F.l1_loss)
        if epoch % cfg.sample_every == 0:
            save_samples(generator, val_set, device, out, epoch)
        return {
            "test": val["loss"],
            "val_psnr_db": val["psnr_db"],
            "bicubic_psnr_db": val["bicubic_psnr_db"],
        }

    return fit_adversarial(
        cfg, runtime, generator, discriminator, opt_g, opt_d, train_set, step, end_of_epoch
    )
