"""Layers for learned transforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016); ``inverse=True`` gives IGDN.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2). beta and gamma are kept non-negative by
    squaring their stored square roots, with a floor on beta so the division is safe.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = self.beta_sqrt.pow(2) + 1e-6
        gamma = self.gamma_sqrt.pow(2).view(channels, channels, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def conv(c_in: int, c_out: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


def deconv(c_in: int, c_out: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        c_in, c_out, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )
