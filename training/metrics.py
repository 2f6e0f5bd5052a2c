"""The numbers every recipe, export and benchmark measures with: one PSNR, one luma, SSIM,
and the reconstruction figures of a data set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from pytorch_msssim import ssim
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from latentwire.shared.images import SIGNED

Images = TypeVar("Images", np.ndarray, torch.Tensor)


def psnr(a: Images, b: Images, peak: float = 255.0, per_image: bool = False) -> Images:
    """PSNR in dB of two images (numpy arrays or torch tensors of one shape, values up to
    ``peak``), in float64: over the whole arrays, or with ``per_image`` one value per item
    of the first axis. Identical images give 100 dB, not infinity."""
    if isinstance(a, torch.Tensor):
        diff = (a.double() - b.double()) ** 2
        mse = diff.reshape(len(diff), -1).mean(1) if per_image else diff.mean()
        return 10 * torch.log10(peak**2 / mse.clamp_min(1e-10 * peak**2))
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = diff.reshape(len(diff), -1).mean(1) if per_image else diff.mean()
    return 10 * np.log10(peak**2 / np.maximum(mse, 1e-10 * peak**2))


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] (float64) of (..., 3) RGB pixels 0..255, as MATLAB's
    ``rgb2ycbcr`` (the super-resolution papers' protocol)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on BT.601 luma (:func:`luma`) of two uint8 RGB images (H, W, 3); a grayscale
    image (H, W) is its own luma."""
    return float(psnr(luma(a), luma(b))) if a.ndim == 3 else float(psnr(a, b))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each image of two (N, C, H, W) batches in [0, 1] (a smaller window for small
    images)."""
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
    """Mean MSE (on the [-1, 1] scale the model is trained on), PSNR and SSIM over a data
    set of images in [-1, 1], measured on what a user receives: 8-bit pixels."""
    mse_sum = psnr_sum = ssim_sum = 0.0
    count = 0
    loader = DataLoader(dataset, batch_size=batch_size)
    for x in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        x = x.to(device)
        x_hat = reconstruct(x)
        mse_sum += (x_hat - x).pow(2).flatten(1).mean(1).sum().item()
        a, b = SIGNED.to_pixels(x), SIGNED.to_pixels(x_hat)
        psnr_sum += psnr(a, b, per_image=True).sum().item()
        ssim_sum += ssim_per_image(a.float() / 255, b.float() / 255).sum().item()
        count += len(x)
    return {
        "test_images": count,
        "mse": mse_sum / count,
        "psnr_db": psnr_sum / count,
        "ssim": ssim_sum / count,
    }
