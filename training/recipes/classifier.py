"""Recipe: train the small classifier whose features score generated images.

    latentwire train classifier --dataset fashion-mnist --epochs 5

A two-conv network (see ``shared/models/gan.py``) trained with cross-entropy through the
shared loop. Its 128-dimensional feature layer is what ``latentwire eval gan`` compares
between generated and real images (``training/recipes/gan.py``); its predictions give the
class coverage. Horizontal flips are on by default for Fashion-MNIST (clothes are
symmetric), off for MNIST (digits are not).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from latentwire.shared.images import UNIT
from latentwire.shared.models import get_model
from latentwire.training import distributed
from latentwire.training.data import (
    ImageDataConfig,
    LabelledImages,
    add_image_arguments,
    load_image_data,
    random_hflip,
    run_datasets,
)
from latentwire.training.loop import add_loop_arguments, fit, recipe_main

FAMILIES = ("classifier",)
TASK = "classify"
PIXELS = UNIT


@dataclass
class TrainConfig(ImageDataConfig):
    features: int = 128
    flip: bool | None = None  # default: on for fashion-mnist only
    epochs: int = 5
    out: str = "runs/classifier"


@torch.inference_mode()
def accuracy(model: nn.Module, data: Dataset, device: torch.device) -> dict[str, float]:
    correct, total, loss = 0, 0, 0.0
    for images, labels in DataLoader(data, batch_size=1000):
        logits = model(images.to(device))
        labels = labels.to(device)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    return {"loss": loss / total, "accuracy": correct / total}


def train(cfg: TrainConfig) -> nn.Module:
    runtime = distributed.setup(cfg.device)
    try:
        train_set, test_set, shape = load_image_data(cfg, PIXELS)
        train_set, test_set = LabelledImages(train_set), LabelledImages(test_set)
        if train_set.labels is None:
            raise ValueError(f"{cfg.dataset} has no class labels to train a classifier on")
        classes = int(train_set.labels.max()) + 1
        flip = cfg.dataset == "fashion-mnist" if cfg.flip is None else cfg.flip
        torch.manual_seed(cfg.seed)
        model = get_model("classifier", shape=shape, classes=classes, features=cfg.features)

        def batch_loss(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            images, labels = batch
            if flip:
                images = random_hflip(images)
            return F.cross_entropy(m(images), labels)

        def evaluate(m: nn.Module, data: Dataset) -> dict[str, float]:
            return accuracy(m, data, runtime.device)

        return fit(cfg, runtime, model, train_set, test_set, batch_loss, evaluate)
    finally:
        distributed.teardown(runtime)


def default_id(cfg: dict[str, Any]) -> str:
    return f"{cfg['dataset']}-classifier"


def metrics(model: nn.Module, cfg: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """For the package: test-set accuracy."""
    test_set = LabelledImages(run_datasets(cfg, data_dir, PIXELS)[1])
    found = accuracy(model, test_set, torch.device("cpu"))
    return {"test_accuracy": round(found["accuracy"], 4), "test_images": len(test_set)}


def summary(metrics: dict[str, Any]) -> str:
    return f"test accuracy {metrics['test_accuracy']}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    add_image_arguments(parser, d)
    parser.add_argument("--features", type=int, default=d.features, help="feature layer size")
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: on for fashion-mnist)",
    )
    add_loop_arguments(parser, d)


def main(argv: list[str] | None = None) -> None:
    recipe_main("classifier", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
