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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image

from latentwire.shared.images import UNIT, open_image
from latentwire.shared.models import get_model
from latentwire.shared.resample import bicubic_upscale, downscale, modcrop
from latentwire.shared.upscaling import upscale_image
from latentwire.training import distributed
from latentwire.training.adversarial import fit_adversarial
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.data import image_files
from latentwire.training.loop import LoopConfig, add_loop_arguments, fit, recipe_main
from latentwire.training.metrics import luma, psnr, ssim_per_image
from latentwire.training.photos import (
    TRAIN_SETS,
    CenterPairs,
    PatchPairs,
    find_folders,
    photo_split,
)
from latentwire.training.plots import save_loss_curve

log = logging.getLogger("latentwire.train")

FAMILIES = ("srresnet",)
TASK = "upscale"
PIXELS = UNIT
TEST_SETS = ("set5", "bsd100")  # what export measures (never trained on)
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's name for the ImageNet weights
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
Upscaler = Callable[[Image.Image], Image.Image]


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
        truth = PIXELS.to_pixels(hr)
        ours += psnr(PIXELS.to_pixels(sr), truth).item()
        bicubic = F.interpolate(lr, scale_factor=hr.shape[-1] // lr.shape[-1], mode="bicubic")
        theirs += psnr(PIXELS.to_pixels(bicubic), truth).item()
    n = len(data)
    return {"loss": total / n, "psnr_db": ours / n, "bicubic_psnr_db": theirs / n}


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
            tiles.append(PIXELS.to_pixels(image[:, :side, :side]).cpu() / 255)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"samples-epoch{epoch:04d}.png"
    save_image(tiles, path, nrow=3, padding=2)
    return path


def load_data(cfg: TrainConfig) -> tuple[PatchPairs, CenterPairs]:
    train_files, val_files = photo_split(cfg.data, cfg.data_dir, cfg.val_fraction)
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


# The SRGAN stage (``--stage gan``): a pretrained generator against a discriminator. Each
# iteration updates the discriminator once (real HR patches -> 1, generated -> 0, binary
# cross-entropy on logits) and then the generator through it: lambda_perceptual * MSE of
# VGG19 relu5_4 features + lambda_adv * BCE(D(G(lr)), 1) + lambda_pixel * L1. Mixed
# precision (bf16) on CUDA.


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
        return _train_gan(cfg, runtime, lambda_perceptual, vgg_weights)
    finally:
        distributed.teardown(runtime)


def _train_gan(cfg: TrainConfig, runtime, lambda_perceptual: float, vgg_weights) -> nn.Module:
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


# Quality as the papers measure it: PSNR and SSIM on the Y channel. Protocol (SRCNN, EDSR,
# ...): the HR image is cropped to a multiple of the scale, the LR input is its
# antialiased bicubic downscale, outputs are rounded to 8 bits, Y is BT.601 luma (16-235),
# and ``scale`` pixels are cropped from every border before measuring.


def y_metrics(output: Image.Image, truth: Image.Image, border: int) -> tuple[float, float]:
    """(PSNR in dB, SSIM) on Y with ``border`` pixels cropped from each side."""
    a = luma(np.asarray(output.convert("RGB")))
    b = luma(np.asarray(truth.convert("RGB")))
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    ta = torch.from_numpy(a / 255.0)[None, None].float()
    tb = torch.from_numpy(b / 255.0)[None, None].float()
    return float(psnr(a, b)), float(ssim_per_image(ta, tb)[0])


def evaluate_sr(
    files: list[Path], scale: int, methods: dict[str, Upscaler]
) -> dict[str, dict[str, float]]:
    """Mean Y PSNR/SSIM of each upscaling method over HR image files."""
    sums = {name: [0.0, 0.0] for name in methods}
    for path in files:
        truth = modcrop(open_image(path.read_bytes(), 1 << 28).convert("RGB"), scale)
        low = downscale(truth, scale)
        for name, upscale in methods.items():
            p, s = y_metrics(upscale(low), truth, scale)
            sums[name][0] += p
            sums[name][1] += s
    n = len(files)
    return {name: {"psnr_y_db": p / n, "ssim_y": s / n} for name, (p, s) in sums.items()}


def bicubic(scale: int) -> Upscaler:
    return lambda image: bicubic_upscale(image, scale)


def default_id(cfg: dict[str, Any]) -> str:
    return f"sr{cfg['model']['config'].get('scale', 2)}x"


def metrics(
    model: nn.Module,
    cfg: dict[str, Any],
    data_dir: str | None,
    test_sets: tuple[str, ...] = TEST_SETS,
) -> dict[str, Any]:
    """For the package: Y-channel PSNR/SSIM of the model and of bicubic on each test set."""
    scale = model.config.scale
    found: dict[str, Any] = {}
    for name in test_sets:
        (folder,) = find_folders(name, data_dir or cfg.get("data_dir"))
        files = image_files(folder)
        # Whole images in one call: tiles give the same pixels (tested), only slower.
        methods = {"model": lambda im: upscale_image(model, im, None), "bicubic": bicubic(scale)}
        result = evaluate_sr(files, scale, methods)
        found[name] = {
            "images": len(files),
            **{f"{k}_{m}": round(v, 4) for m, r in result.items() for k, v in r.items()},
        }
    return found


def summary(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {m['psnr_y_db_model']:.2f} dB Y-PSNR (bicubic {m['psnr_y_db_bicubic']:.2f})"
        for name, m in metrics.items()
    )


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
