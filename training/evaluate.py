"""Test-set metrics and the pictures a training run leaves behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch
from pytorch_msssim import ssim
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image
from tqdm import tqdm


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], rounded to 8 bits: the image a user actually receives."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 255.0


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [0, 1] images (N, C, H, W)."""
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    side = min(x.shape[-2:])
    win = min(11, side if side % 2 else side - 1)
    return ssim(x, y, data_range=1.0, size_average=False, win_size=win)


@torch.inference_mode()
def evaluate_reconstruction(
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 500,
    progress: bool = True,
) -> dict[str, float]:
    """Mean MSE (on the [-1, 1] scale the model is trained on), PSNR and SSIM over a data set."""
    mse_sum = psnr_sum = ssim_sum = 0.0
    count = 0
    loader = DataLoader(dataset, batch_size=batch_size)
    for x in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        x = x.to(device)
        x_hat = reconstruct(x)
        mse_sum += (x_hat - x).pow(2).flatten(1).mean(1).sum().item()
        a, b = to_unit(x), to_unit(x_hat)
        psnr_sum += psnr(a, b).sum().item()
        ssim_sum += ssim_per_image(a.float(), b.float()).sum().item()
        count += len(x)
    return {
        "test_images": count,
        "mse": mse_sum / count,
        "psnr_db": psnr_sum / count,
        "ssim": ssim_sum / count,
    }


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
    """Originals in the top row, their reconstructions below, as the prototype showed."""
    x = torch.stack([dataset[i] for i in range(min(count, len(dataset)))]).to(device)
    x_hat = reconstruct(x)
    save_image(torch.cat([to_unit(x), to_unit(x_hat)]).cpu(), path, nrow=len(x), padding=2)
