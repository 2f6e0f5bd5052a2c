"""Recipe: train a prototype autoencoder (mlp, conv, convlinear) with MSE and Adam.

    latentwire train ae --arch conv --dataset mnist --epochs 10
    torchrun --nproc_per_node 2 -m latentwire.training.autoencoder --arch conv ...

A checkpoint is saved after every epoch; ``--resume`` continues from the newest one in
``--out`` exactly where the run stopped (model, optimizer, epoch, RNG, history).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from latentwire.shared.models import ImageShape, get_model
from latentwire.training import distributed
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.data import ImageFiles, load_datasets
from latentwire.training.evaluate import (
    evaluate_reconstruction,
    save_loss_curve,
    save_reconstruction_grid,
)
from latentwire.training.loop import LoopConfig, add_loop_arguments, fit, recipe_main

log = logging.getLogger("latentwire.train")


@dataclass
class ImageDataConfig(LoopConfig):
    """The data options of the recipes that train on a data set of images."""

    dataset: str = "fashion-mnist"  # fashion-mnist, mnist or folder:PATH
    data_dir: str | None = None
    download: bool = False
    # folder data sets only: the geometry images are brought to
    channels: int = 1
    height: int = 28
    width: int = 28
    fit: str = "center-crop"


@dataclass
class TrainConfig(ImageDataConfig):
    arch: str = "convlinear"
    out: str = "runs/ae"
    # architecture options
    hidden: int = 64  # mlp
    latent_dim: int = 32  # convlinear
    conv_channels: tuple[int, ...] = (32, 64)  # convlinear


def model_options(cfg: TrainConfig, shape: ImageShape) -> dict:
    options: dict = {"shape": shape}
    if cfg.arch == "mlp":
        options["hidden"] = cfg.hidden
    elif cfg.arch == "convlinear":
        options.update(latent_dim=cfg.latent_dim, channels=tuple(cfg.conv_channels))
    return options


def load_data(cfg, runtime: distributed.Runtime) -> tuple[Dataset, Dataset, ImageShape]:
    """The recipe's data sets, cut to ``--limit`` when asked (used by every image recipe)."""
    train_set, test_set, shape = load_datasets(
        cfg.dataset,
        data_dir=cfg.data_dir,
        download=cfg.download,
        shape=ImageShape(cfg.channels, cfg.height, cfg.width),
        fit=cfg.fit,
    )
    if cfg.limit:
        train_set = Subset(train_set, range(min(cfg.limit, len(train_set))))
        test_set = Subset(test_set, range(min(cfg.limit, len(test_set))))
    return train_set, test_set, shape


def mse_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), x)


def train(cfg: TrainConfig) -> nn.Module:
    """Run (or resume) a training run; returns the trained model (unwrapped, on its device)."""
    runtime = distributed.setup(cfg.device)
    try:
        train_set, test_set, shape = load_data(cfg, runtime)
        torch.manual_seed(cfg.seed)
        model = get_model(cfg.arch, **model_options(cfg, shape))

        def evaluate(m: nn.Module, data: Dataset) -> dict[str, float]:
            metrics = evaluate_reconstruction(m, data, runtime.device, progress=False)
            return {"loss": metrics["mse"], "psnr_db": metrics["psnr_db"]}

        model = fit(cfg, runtime, model, train_set, test_set, mse_loss, evaluate)
        if runtime.is_main:
            write_report(cfg, model, test_set, runtime.device)
        return model
    finally:
        distributed.teardown(runtime)


def write_report(
    cfg: LoopConfig,
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    test_set: Dataset,
    device: torch.device,
) -> None:
    """metrics.json, loss_curve.png and reconstructions.png in the run folder."""
    out = Path(cfg.out)
    metrics = evaluate_reconstruction(reconstruct, test_set, device, progress=cfg.progress)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_loss_curve(load_checkpoint(latest_checkpoint(out))["history"], out / "loss_curve.png")
    save_reconstruction_grid(reconstruct, test_set, device, out / "reconstructions.png")
    log.info("test set: %s", json.dumps(metrics))


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None, help="folder with the data sets (default: $LATENTWIRE_DATA)"
    )
    parser.add_argument(
        "--download", action="store_true", help="download with torchvision if not found locally"
    )


def add_image_arguments(parser: argparse.ArgumentParser, d: ImageDataConfig) -> None:
    parser.add_argument("--dataset", default=d.dataset, help="fashion-mnist, mnist or folder:PATH")
    add_data_arguments(parser)
    parser.add_argument("--channels", type=int, choices=[1, 3], default=d.channels)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--fit", choices=ImageFiles.FITS, default=d.fit)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--arch", choices=["mlp", "conv", "convlinear"], default=d.arch)
    add_image_arguments(parser, d)
    add_loop_arguments(parser, d)
    parser.add_argument("--hidden", type=int, default=d.hidden, help="mlp: hidden units")
    parser.add_argument("--latent-dim", type=int, default=d.latent_dim, help="convlinear: IR size")
    parser.add_argument(
        "--conv-channels",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=d.conv_channels,
        help="convlinear: widths of the strided convs, e.g. 32,64",
    )


def main(argv: list[str] | None = None) -> None:
    recipe_main("ae", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
