"""The SRGAN stage: a pretrained generator against a discriminator (``train sr --stage gan``).

Each iteration updates the discriminator once (real HR patches -> 1, generated -> 0,
binary cross-entropy on logits) and then the generator through it:
lambda_perceptual * MSE of VGG19 relu5_4 features + lambda_adv * BCE(D(G(lr)), 1)
+ lambda_pixel * L1. Mixed precision (bf16) on CUDA.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from latentwire.shared.models import config_to_dict, get_model
from latentwire.training import distributed
from latentwire.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from latentwire.training.evaluate import save_loss_curve
from latentwire.training.loop import hardware, weights_digest
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
    history: dict[str, list[float]] = {"train": [], "test": [], "d": []}
    start_epoch, seconds = 0, 0.0

    checkpoint = latest_checkpoint(out) if cfg.resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, map_location=device)
        generator.load_state_dict(state["model"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["optimizer"])
        opt_d.load_state_dict(state["optimizer_d"])
        history, start_epoch, seconds = state["history"], state["epoch"], state["seconds"]
        set_rng_state(state["rng"])
        log.info("resumed from %s (epoch %d)", checkpoint, start_epoch)
    else:
        generator.load_state_dict(load_checkpoint(cfg.init, map_location=device)["model"])

    g, d = generator, discriminator
    if runtime.distributed:
        g, d = DistributedDataParallel(generator), DistributedDataParallel(discriminator)
    sampler = DistributedSampler(
        train_set, num_replicas=runtime.world_size, rank=runtime.rank, seed=cfg.seed
    )
    loader = DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers
    )
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    saved_config = {
        **dataclasses.asdict(cfg),
        "model": {"family": generator.family, "config": config_to_dict(generator.config)},
    }

    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        g.train()
        d.train()
        g_total = d_total = 0.0
        steps = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and runtime.is_main),
        )
        for lr, hr in bar:
            lr, hr = lr.to(device), hr.to(device)
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
            g_total += g_loss.item()
            d_total += d_loss.item()
            steps += 1
            bar.set_postfix(g=f"{g_loss.item():.4f}", d=f"{d_loss.item():.3f}")
        seconds += time.perf_counter() - began

        if runtime.is_main:
            generator.eval()
            val = evaluate_generator(generator, val_set, device, F.l1_loss)
            history["train"].append(g_total / steps)
            history["d"].append(d_total / steps)
            history["test"].append(val["loss"])
            if (epoch + 1) % cfg.sample_every == 0:
                save_samples(generator, val_set, device, out, epoch + 1)
            path = save_checkpoint(
                out,
                epoch + 1,
                {
                    "model": generator.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "optimizer": opt_g.state_dict(),
                    "optimizer_d": opt_d.state_dict(),
                    "history": history,
                    "seconds": seconds,
                    "hardware": hardware(),
                    "config": saved_config,
                },
            )
            log.info(
                "epoch %d/%d  g %.5g  d %.4g  val psnr %.2f dB (bicubic %.2f) -> %s",
                epoch + 1,
                cfg.epochs,
                g_total / steps,
                d_total / steps,
                val["psnr_db"],
                val["bicubic_psnr_db"],
                path.name,
            )
        distributed.barrier(runtime)

    generator.eval()
    if runtime.is_main:
        save_loss_curve(history, out / "loss_curve.png")
    log.info("rank %d final weights sha256 %s", runtime.rank, weights_digest(generator))
    return generator
