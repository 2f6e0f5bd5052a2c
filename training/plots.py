"""The pictures and the report a training run leaves in its folder."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch
from torch.utils.data import Dataset
from torchvision.utils import save_image

from latentwire.shared.images import SIGNED
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.metrics import evaluate_reconstruction

log = logging.getLogger("latentwire.train")


def save_loss_curve(history: dict[str, list[float]], path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.inference_mode()
def save_reconstruction_grid(
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    device: torch.device,
    path: str | Path,
    count: int = 10,
) -> None:
    """Originals in the top row, their reconstructions below, as the prototype showed
    (images in [-1, 1])."""
    x = torch.stack([dataset[i] for i in range(min(count, len(dataset)))]).to(device)
    x_hat = reconstruct(x)
    rows = torch.cat([SIGNED.to_pixels(x), SIGNED.to_pixels(x_hat)]) / 255
    save_image(rows.cpu(), path, nrow=len(x), padding=2)


def write_report(
    out: str | Path,
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    test_set: Dataset,
    device: torch.device,
    progress: bool = True,
) -> None:
    """metrics.json, loss_curve.png and reconstructions.png in the run folder ``out``."""
    out = Path(out)
    metrics = evaluate_reconstruction(reconstruct, test_set, device, progress=progress)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_loss_curve(load_checkpoint(latest_checkpoint(out))["history"], out / "loss_curve.png")
    save_reconstruction_grid(reconstruct, test_set, device, out / "reconstructions.png")
    log.info("test set: %s", json.dumps(metrics))
