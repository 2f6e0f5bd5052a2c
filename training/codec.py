"""Recipe: train a rate-distortion codec (analysis, factorized prior, synthesis).

    latentwire train codec --dataset fashion-mnist --quality 3 --epochs 10
    latentwire train codec --dataset photos --transform bmshj2018 --quality 3 --patch 128

``--dataset photos`` trains an any-size photo codec on random ``--patch`` squares (flips,
rotations) of the photo folders in ``--photos`` (default: BSDS500 train, T91, the CC0
photos; never Kodak, Set5 or BSD100), ``--patches-per-epoch`` a epoch; 5% of the photos
(by name) are held out, their centre squares the test set.

Loss = rate + lambda * 255^2 * MSE, with the rate in bits per pixel from the prior's
likelihoods of the noisy latent, and MSE on the [0, 1] scale (as CompressAI's zoo). The
quality level picks lambda from :data:`LAMBDAS`; ``--lmbda`` overrides it. ``--init``
starts from another codec's checkpoint (a neighbouring quality level converges fast);
from a codec with one density per channel, ``--positional-prior`` and ``--prior-contexts``
start with copies of that channel's density at every position and context.

    latentwire train codec --dataset fashion-mnist --quality 3 --positional-prior \
        --prior-contexts 4 --init runs/fashion-mnist-q3/ckpt-...pt --epochs 6 --lr-drop 4

``--hard-quantization`` is a last stage for a trained codec: the analysis stays fixed, and
the synthesis and the prior train on the rounded latent, as it is coded and decoded.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from latentwire.shared.models import ImageShape, get_model
from latentwire.shared.models.codec import TRANSFORMS
from latentwire.shared.models.entropy import spread_prior
from latentwire.training import distributed
from latentwire.training.autoencoder import (
    ImageDataConfig,
    add_image_arguments,
    load_data,
    write_report,
)
from latentwire.training.checkpoint import load_checkpoint
from latentwire.training.evaluate import psnr, to_unit
from latentwire.training.loop import add_loop_arguments, fit, recipe_main
from latentwire.training.sr_data import TRAIN_SETS, RandomPatches, find_folders, split_files

log = logging.getLogger("latentwire.train")

# quality level -> lambda; higher quality spends more bits for less distortion.
LAMBDAS = {1: 0.0003, 2: 0.0008, 3: 0.002, 4: 0.005, 5: 0.013, 6: 0.035}
# Photos: CompressAI's bmshj2018-factorized lambdas for its quality levels 1-6.
PHOTO_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483}


def lambda_of(dataset: str, quality: int, lmbda: float | None = None) -> float:
    """The rate-distortion trade-off of a run: ``lmbda`` if given, else its quality's."""
    if lmbda is not None:
        return lmbda
    return (PHOTO_LAMBDAS if dataset == "photos" else LAMBDAS)[quality]


@dataclass
class TrainConfig(ImageDataConfig):
    out: str = "runs/codec"
    batch_size: int = 64
    quality: int = 3
    lmbda: float | None = None  # default: LAMBDAS[quality]
    transform: str = "gdn"
    filters: int = 32
    latent_channels: int = 32
    positional_prior: bool = False
    prior_contexts: int = 1
    hard_quantization: bool = False  # round in training too; the analysis stays as it is
    init: str | None = None  # checkpoint to start from
    photos: str = TRAIN_SETS  # --dataset photos: the folders to cut patches from
    patch: int = 128
    patches_per_epoch: int = 4096


class PhotoPatches(RandomPatches):
    """Random photo patches in [-1, 1], as the codecs take them."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return super().__getitem__(index).mul(2).sub(1)


def center_squares(files: list, side: int) -> list[torch.Tensor]:
    """The centre ``side`` square of each photo at least that big, in [-1, 1]."""
    squares = []
    for path in files:
        with Image.open(path) as image:
            photo = image.convert("RGB")
        w, h = photo.size
        if min(w, h) >= side:
            left, top = (w - side) // 2, (h - side) // 2
            square = np.asarray(photo.crop((left, top, left + side, top + side)))
            squares.append(torch.from_numpy(square.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return squares


def load_photos(cfg: TrainConfig) -> tuple[Dataset, Dataset, ImageShape]:
    """(random training patches, held-out centre squares, patch geometry)."""
    train_files, test_files = split_files(find_folders(cfg.photos, cfg.data_dir), 0.05)
    train = PhotoPatches(train_files, cfg.patch, cfg.patches_per_epoch, cfg.seed)
    test = center_squares(test_files, cfg.patch)
    log.info("%d training photos, %d held out", len(train.photos), len(test))
    return train, test, ImageShape(3, cfg.patch, cfg.patch)


def rate_distortion(
    model: nn.Module, x: torch.Tensor, lmbda: float, hard: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, bits per pixel, MSE on [0, 1]) of a batch."""
    x_hat, likelihoods = model(x, hard)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = -torch.log2(likelihoods).sum() / pixels
    mse = nn.functional.mse_loss(x_hat, x) / 4  # [-1, 1] -> [0, 1] scale
    return bpp + lmbda * 255**2 * mse, bpp, mse


@torch.inference_mode()
def evaluate_codec(
    model: nn.Module, data: Dataset, lmbda: float, device: torch.device
) -> dict[str, float]:
    """Loss, estimated bits per image (from the prior) and PSNR with rounded latents."""
    loss = bits = psnr_sum = 0.0
    count = 0
    for x in DataLoader(data, batch_size=500):
        x = x.to(device)
        batch_loss, bpp, _ = rate_distortion(model, x, lmbda)
        x_hat, _ = model(x)
        loss += batch_loss.item() * len(x)
        bits += bpp.item() * x.shape[2] * x.shape[3] * len(x)
        psnr_sum += psnr(to_unit(x), to_unit(x_hat)).sum().item()
        count += len(x)
    return {"loss": loss / count, "bytes": bits / 8 / count, "psnr_db": psnr_sum / count}


def train(cfg: TrainConfig) -> nn.Module:
    runtime = distributed.setup(cfg.device)
    try:
        lmbda = lambda_of(cfg.dataset, cfg.quality, cfg.lmbda)
        if cfg.dataset == "photos":
            train_set, test_set, shape = load_photos(cfg)
        else:
            train_set, test_set, shape = load_data(cfg, runtime)
        torch.manual_seed(cfg.seed)
        model = get_model(
            "factorized",
            shape=shape,
            transform=cfg.transform,
            filters=cfg.filters,
            latent_channels=cfg.latent_channels,
            positional_prior=cfg.positional_prior,
            prior_contexts=cfg.prior_contexts,
        )
        if cfg.init and not cfg.resume:
            state = load_checkpoint(cfg.init)["model"]
            spread_prior(state, model.prior)
            model.load_state_dict(state)
            if runtime.is_main:
                log.info("initialized from %s", cfg.init)

        if cfg.hard_quantization:
            # Fixed, not just without gradients: DistributedDataParallel would wait for them.
            model.analysis.requires_grad_(False)

        def batch_loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return rate_distortion(m, x, lmbda, cfg.hard_quantization)[0]

        def evaluate(m: nn.Module, data: Dataset) -> dict[str, float]:
            return evaluate_codec(m, data, lmbda, runtime.device)

        model = fit(cfg, runtime, model, train_set, test_set, batch_loss, evaluate)
        if runtime.is_main:
            write_report(cfg, lambda x: model(x)[0], test_set, runtime.device)
        return model
    finally:
        distributed.teardown(runtime)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    add_image_arguments(parser, d)
    add_loop_arguments(parser, d)
    parser.add_argument("--quality", type=int, choices=sorted(LAMBDAS), default=d.quality)
    parser.add_argument("--lmbda", type=float, default=None, help="override the quality's lambda")
    parser.add_argument("--transform", choices=TRANSFORMS, default=d.transform)
    parser.add_argument("--filters", type=int, default=d.filters, help="hidden width N")
    parser.add_argument("--latent-channels", type=int, default=d.latent_channels, help="M")
    parser.add_argument(
        "--positional-prior",
        action="store_true",
        help="one density per latent channel and position (fixed-geometry models)",
    )
    parser.add_argument(
        "--prior-contexts",
        type=int,
        default=d.prior_contexts,
        help="densities per position, chosen by how many earlier channels are nonzero there",
    )
    parser.add_argument(
        "--hard-quantization",
        action="store_true",
        help="a last stage: the analysis stays fixed, the synthesis and the prior train on "
        "the rounded latent, as it is coded and decoded",
    )
    parser.add_argument("--init", default=None, help="start from this codec checkpoint")
    parser.add_argument("--photos", default=d.photos, help="--dataset photos: folders")
    parser.add_argument("--patch", type=int, default=d.patch, help="photo patch side")
    parser.add_argument("--patches-per-epoch", type=int, default=d.patches_per_epoch)


def main(argv: list[str] | None = None) -> None:
    recipe_main("codec", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
