"""Sampling a generator (``gan``, ``dcgan``): the noise a seed stands for and the images.
Shared by training (sample grids, scores), ``latentwire
sample`` and ``POST /generate``, so one seed means the same images everywhere."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def sample_inputs(
    generator: nn.Module, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The noise (N, latent) a seed stands for, drawn on the CPU so every device agrees;
    for a conditional generator also the labels, each class in turn (0, 1, 2, ...)."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.config.latent, generator=rng)
    classes = generator.config.classes
    return z, (torch.arange(n) % classes if classes else None)


@torch.inference_mode()
def generate(generator: nn.Module, n: int, seed: int, batch: int = 500) -> torch.Tensor:
    """``n`` images (N, C, H, W) in [0, 1], float32 on the CPU, for ``seed``.

    The generator must be in eval mode (its BatchNorm then treats every image alone).
    """
    z, labels = sample_inputs(generator, n, seed)
    device = next(generator.parameters()).device
    out = []
    for start in range(0, n, batch):
        part = None if labels is None else labels[start : start + batch].to(device)
        out.append(generator(z[start : start + batch].to(device), part).float().cpu())
    return torch.cat(out)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> uint8 (N, H, W, C)."""
    return images.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
