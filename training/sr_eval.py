"""Super-resolution quality as the papers measure it: PSNR and SSIM on the Y channel.

Protocol (SRCNN, EDSR, ...): the HR image is cropped to a multiple of the scale, the LR
input is its antialiased bicubic downscale, outputs are rounded to 8 bits, Y is BT.601
luma (16-235), and ``scale`` pixels are cropped from every border before measuring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentwire.shared.resample import bicubic_upscale, downscale, modcrop
from latentwire.training.evaluate import ssim_per_image

# The evaluation sets in ../shared/data; never trained on.
TEST_SETS = ("set5", "bsd100", "kodak")

Upscaler = Callable[[Image.Image], Image.Image]


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] (float64) of an (H, W, 3) uint8 image."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def y_metrics(output: Image.Image, truth: Image.Image, border: int) -> tuple[float, float]:
    """(PSNR in dB, SSIM) on Y with ``border`` pixels cropped from each side."""
    a = luma(np.asarray(output.convert("RGB")))
    b = luma(np.asarray(truth.convert("RGB")))
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * np.log10(255.0**2 / max(mse, 1e-10))
    ta = torch.from_numpy(a / 255.0)[None, None].float()
    tb = torch.from_numpy(b / 255.0)[None, None].float()
    return float(psnr), float(ssim_per_image(ta, tb)[0])


def evaluate_sr(
    files: list[Path], scale: int, methods: dict[str, Upscaler]
) -> dict[str, dict[str, float]]:
    """Mean Y PSNR/SSIM of each upscaling method over HR image files."""
    sums = {name: [0.0, 0.0] for name in methods}
    for path in files:
        with Image.open(path) as image:
            truth = modcrop(image.convert("RGB"), scale)
        low = downscale(truth, scale)
        for name, upscale in methods.items():
            p, s = y_metrics(upscale(low), truth, scale)
            sums[name][0] += p
            sums[name][1] += s
    n = len(files)
    return {name: {"psnr_y_db": p / n, "ssim_y": s / n} for name, (p, s) in sums.items()}


def bicubic(scale: int) -> Upscaler:
    return lambda image: bicubic_upscale(image, scale)
