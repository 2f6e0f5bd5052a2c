"""Recipe: train a 2x super-resolution generator (SRResNet), then optionally as an SRGAN.

    latentwire train sr --stage pretrain --epochs 20
    latentwire train sr --stage gan --init runs/sr/ckpt-...pt --vgg-weights vgg19.pth

``pretrain`` fits the generator alone with an L1 (or MSE) loss: the PSNR-oriented model.
``gan`` starts from a pretrained generator and adds a discriminator: the generator's loss
is lambda_perceptual * VGG19-feature MSE + lambda_adv * adversarial + lambda_pixel * L1.
Data: random patches of the photo folders in ``--data`` (default: the training photo sets
in the data directory), LR made on the fly by antialiased bicubic downscaling, or read
from ``--lr-dir``. Checkpoints every epoch; ``--resume`` continues exactly; torchrun works.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image

from latentwire.shared.models import get_model
from latentwire.training import distributed
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.evaluate import psnr, save_loss_curve
from latentwire.training.loop import LoopConfig, add_loop_arguments, fit, recipe_main
from latentwire.training.sr_data import (
    TRAIN_SETS,
    CenterPairs,
    PatchPairs,
    find_folders,
    split_files,
)

log = logging.getLogger("latentwire.train")


@dataclass
class TrainConfig(LoopConfig):
    data: str = TRAIN_SETS
    data_dir: str | None = None
    lr_dir: str | None = None
    stage: str = "pretrain"
    scale: int = 2
    patch: int = 96  # HR patch side
    patches_per_epoch: int = 4096
    val_fraction: float = 0.05
    sample_every: int = 5  # epochs between sample grids
    features: int = 64
    blocks: int = 16
    batch_norm: bool = False
    bicubic_skip: bool = True
    pixel_loss: str = "l1"
    init: str | None = None  # generator checkpoint to start from (required for --stage gan)
    out: str = "runs/sr"
    batch_size: int = 16
    lr: float = 2e-4  # the generator's (--lr-g)
    epochs: int = 20
    # gan stage
    lr_d: float = 1e-4
    lambda_perceptual: float | None = None  # default 1.0 when VGG weights exist
    lambda_adv: float = 1e-3
    lambda_pixel: float = 1e-2
    vgg_weights: str | None = None
    d_widths: tuple[int, ...] = (64, 128, 256, 512)


def pixel_loss(kind: str):
    return {"l1": F.l1_loss, "mse": F.mse_loss}[kind]


@torch.inference_mode()
def evaluate_generator(model: nn.Module, data: Dataset, device: torch.device, loss) -> dict:
    """Validation loss and RGB PSNR of the model and of bicubic on held-out centre crops."""
    total = ours = theirs = 0.0
    for lr, hr in DataLoader(data, batch_size=1):
        lr, hr = lr.to(device), hr.to(device)
        sr = model(lr)
        total += loss(sr, hr).item()
        ours += psnr(_quantize(sr), hr).item()
        bicubic = F.interpolate(lr, scale_factor=hr.shape[-1] // lr.shape[-1], mode="bicubic")
        theirs += psnr(_quantize(bicubic), hr).item()
    n = len(data)
    return {"loss": total / n, "psnr_db": ours / n, "bicubic_psnr_db": theirs / n}


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


@torch.inference_mode()
def save_samples(
    model: nn.Module, data: Dataset, device: torch.device, out: Path, epoch: int, count: int = 4
) -> Path:
    """A grid, one row per held-out image: bicubic | output | ground truth (128 px crops)."""
    tiles = []
    for i in range(min(count, len(data))):
        lr, hr = data[i]
        lr = lr.unsqueeze(0).to(device)
        scale = hr.shape[-1] // lr.shape[-1]
        bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic")
        side = min(128, hr.shape[-1], hr.shape[-2])
        for image in (bicubic[0], model(lr)[0], hr.to(device)):
            tiles.append(_quantize(image[:, :side, :side]).cpu())
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"samples-epoch{epoch:04d}.png"
    save_image(tiles, path, nrow=3, padding=2)
    return path


def load_data(cfg: TrainConfig) -> tuple[PatchPairs, CenterPairs]:
    train_files, val_files = split_files(find_folders(cfg.data, cfg.data_dir), cfg.val_fraction)
    train = PatchPairs(
        train_files, cfg.patch, cfg.scale, cfg.patches_per_epoch, cfg.seed, cfg.lr_dir
    )
    log.info(
        "%d training photos (%d skipped as too small), %d held out for validation",
        len(train.photos),
        train.skipped,
        len(val_files),
    )
    return train, CenterPairs(val_files, 4 * cfg.patch, cfg.scale)


def build_generator(cfg: TrainConfig) -> nn.Module:
    return get_model(
        "srresnet",
        scale=cfg.scale,
        features=cfg.features,
        blocks=cfg.blocks,
        batch_norm=cfg.batch_norm,
        bicubic_skip=cfg.bicubic_skip,
    )


def train(cfg: TrainConfig) -> nn.Module:
    if cfg.stage == "gan":
        from latentwire.training.srgan import train_gan

        return train_gan(cfg)
    runtime = distributed.setup(cfg.device)
    try:
        train_set, val_set = load_data(cfg)
        torch.manual_seed(cfg.seed)
        model = build_generator(cfg)
        if cfg.init and not cfg.resume:
            model.load_state_dict(load_checkpoint(cfg.init)["model"])
        loss = pixel_loss(cfg.pixel_loss)

        def batch_loss(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            lr, hr = batch
            return loss(m(lr), hr)

        def evaluate(m: nn.Module, data: Dataset) -> dict[str, float]:
            epoch = train_set.epoch + 1  # the loop sets it; right after a resume too
            if epoch % cfg.sample_every == 0:
                save_samples(m, data, runtime.device, Path(cfg.out), epoch)
            return evaluate_generator(m, data, runtime.device, loss)

        model = fit(cfg, runtime, model, train_set, val_set, batch_loss, evaluate)
        if runtime.is_main:
            history = load_checkpoint(latest_checkpoint(cfg.out))["history"]
            save_loss_curve(history, f"{cfg.out}/loss_curve.png")
        return model
    finally:
        distributed.teardown(runtime)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    add_loop_arguments(parser, d)
    parser.set_defaults(lr=d.lr)
    parser.add_argument("--lr-g", dest="lr", type=float, help="the generator's learning rate")
    parser.add_argument("--stage", choices=["pretrain", "gan"], default=d.stage)
    parser.add_argument("--data", default=d.data, help="comma-separated photo folders or names")
    parser.add_argument("--data-dir", default=None, help="where data set names are looked up")
    parser.add_argument("--lr-dir", default=None, help="LR images made by latentwire downscale")
    parser.add_argument("--scale", type=int, choices=[2, 4], default=d.scale)
    parser.add_argument("--patch", type=int, default=d.patch, help="HR patch side in pixels")
    parser.add_argument("--patches-per-epoch", type=int, default=d.patches_per_epoch)
    parser.add_argument("--sample-every", type=int, default=d.sample_every, help="epochs")
    parser.add_argument("--features", type=int, default=d.features)
    parser.add_argument("--blocks", type=int, default=d.blocks)
    parser.add_argument("--batch-norm", action="store_true", help="BN in the residual blocks")
    parser.add_argument(
        "--no-bicubic-skip",
        dest="bicubic_skip",
        action="store_false",
        help="predict the image itself, not its difference to the bicubic upscale",
    )
    parser.add_argument("--pixel-loss", choices=["l1", "mse"], default=d.pixel_loss)
    parser.add_argument("--init", default=None, help="generator checkpoint to start from")
    parser.add_argument("--lr-d", type=float, default=d.lr_d, help="gan: discriminator lr")
    parser.add_argument("--lambda-perceptual", type=float, default=None)
    parser.add_argument("--lambda-adv", type=float, default=d.lambda_adv)
    parser.add_argument("--lambda-pixel", type=float, default=d.lambda_pixel)
    parser.add_argument("--vgg-weights", default=None, help="torchvision VGG19 state dict")
    parser.add_argument(
        "--d-widths",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=d.d_widths,
        help="discriminator widths, e.g. 64,128,256,512",
    )


def main(argv: list[str] | None = None) -> None:
    recipe_main("sr", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
