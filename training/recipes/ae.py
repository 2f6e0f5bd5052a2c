"""Recipe: train a prototype autoencoder (mlp, conv, convlinear) with MSE and Adam.

    latentwire train ae --arch conv --dataset mnist --epochs 10
    torchrun --nproc_per_node 2 -m latentwire.training.recipes.ae --arch conv ...

A checkpoint is saved after every epoch; ``--resume`` continues from the newest one in
``--out`` exactly where the run stopped (model, optimizer, epoch, RNG, history).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from latentwire.shared.images import SIGNED
from latentwire.shared.models import ImageShape, get_model
from latentwire.training import distributed
from latentwire.training.data import (
    ImageDataConfig,
    add_image_arguments,
    load_image_data,
    run_datasets,
)
from latentwire.training.loop import add_loop_arguments, fit, recipe_main
from latentwire.training.metrics import evaluate_reconstruction
from latentwire.training.plots import write_report

FAMILIES = ("mlp", "conv", "convlinear")
TASK = "autoencoder"  # the manifest's task
PIXELS = SIGNED


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


def mse_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), x)


def train(cfg: TrainConfig) -> nn.Module:
    """Run (or resume) a training run; returns the trained model (unwrapped, on its device)."""
    runtime = distributed.setup(cfg.device)
    try:
        train_set, test_set, shape = load_image_data(cfg, PIXELS)
        torch.manual_seed(cfg.seed)
        model = get_model(cfg.arch, **model_options(cfg, shape))

        def evaluate(m: nn.Module, data: Dataset) -> dict[str, float]:
            metrics = evaluate_reconstruction(m, data, runtime.device, progress=False)
            return {"loss": metrics["mse"], "psnr_db": metrics["psnr_db"]}

        model = fit(cfg, runtime, model, train_set, test_set, mse_loss, evaluate)
        if runtime.is_main:
            write_report(cfg.out, model, test_set, runtime.device, cfg.progress)
        return model
    finally:
        distributed.teardown(runtime)


def default_id(cfg: dict[str, Any]) -> str:
    return f"{cfg['dataset']}-{cfg['model']['family']}"


def metrics(model: nn.Module, cfg: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """For the package: test-set MSE, PSNR and SSIM."""
    test_set = run_datasets(cfg, data_dir, PIXELS)[1]
    measured = evaluate_reconstruction(model, test_set, torch.device("cpu"))
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in measured.items()}


def summary(metrics: dict[str, Any]) -> str:
    return f"test PSNR {metrics['psnr_db']:.2f} dB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--arch", choices=FAMILIES, default=d.arch)
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
