"""The factorized prior: one learned density per latent channel (Ballé et al. 2018, sec. 6.1).

In training it gives each quantized latent's likelihood (with additive uniform noise as the
stand-in for rounding). At export it is turned into integer frequency tables, once; after
that no network is evaluated to code a symbol, so decoding is bit-exact on any machine.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared.coding import FREQUENCY_BITS, SymbolTables


class FactorizedPrior(nn.Module):
    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ) -> None:
        super().__init__()
        self.channels = channels
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = float(np.log(np.expm1(1 / scale / widths[i + 1])))
            self.matrices.append(
                nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init))
            )
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, L) -> the logit of the cumulative density at x, per channel."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(y - 1/2 < Y < y + 1/2) for every element of y (N, C, ...)."""
        shape = y.shape
        values = y.transpose(0, 1).reshape(self.channels, 1, -1)
        # Both bounds in one pass through the small per-channel network (it is op-bound).
        bounds = self._logits_cumulative(torch.cat([values - 0.5, values + 0.5], dim=2))
        lower, upper = bounds.chunk(2, dim=2)
        # Subtract in the tail where the sigmoids are far from saturation (numerics).
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.clamp_min(1e-9)
        moved = shape[1:2] + shape[:1] + shape[2:]
        return p.reshape(moved).transpose(0, 1)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, likelihoods): noisy in training, rounded in eval."""
        y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y)
        return y_hat, self.likelihood(y_hat)

    @torch.no_grad()
    def tables(self, tail_mass: float = 1e-7, max_radius: int = 255) -> SymbolTables:
        """Integer frequency tables over a symmetric range [-R, R] that holds all but
        ``tail_mass`` of every channel's density; each symbol keeps a frequency of at least 1.
        """
        device = self.matrices[0].device
        grid = torch.arange(-max_radius - 1, max_radius + 2, device=device, dtype=torch.float32)
        cdf = torch.sigmoid(
            self._logits_cumulative(grid.view(1, 1, -1).expand(self.channels, 1, -1) + 0.5)
        ).squeeze(1)  # (C, len(grid)): P(Y < k + 1/2)
        inside = (cdf > tail_mass / 2) & (cdf < 1 - tail_mass / 2)
        ks = grid[inside.any(0)]
        radius = int(max(abs(ks.min().item()), abs(ks.max().item()), 1)) if len(ks) else 1
        radius = min(radius, max_radius)
        values = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
        pmf = self.likelihood(values.view(1, 1, -1).expand(1, self.channels, -1))[0]
        pmf = pmf.double().cpu().numpy()
        return SymbolTables.from_pmf(pmf, radius, FREQUENCY_BITS)
