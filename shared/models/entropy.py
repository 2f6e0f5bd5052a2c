"""The factorized prior: learned densities of the latent (Ballé et al. 2018, sec. 6.1).

One density per latent channel, as in the paper; for models of one fixed geometry, one per
channel and position, and optionally per context, where the context is how many earlier
channels are nonzero at the position (:class:`SymbolTables` has the rule). The latent's
elements stay independent given the already decoded channels, and no network is evaluated
to code: at export every table becomes integer frequencies, once, so decoding is bit-exact
on any machine — the learned density itself (:meth:`FactorizedPrior.tables`), or, for
models of one fixed geometry, the training latents' histograms with the learned density as
their prior (:meth:`FactorizedPrior.counted_tables`). In training the prior gives each
quantized latent's likelihood, with additive uniform noise as the stand-in for rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared import coding
from latentwire.shared.coding import FREQUENCY_BITS, SymbolTables


class FactorizedPrior(nn.Module):
    def __init__(
        self,
        channels: int,
        positions: int = 1,
        contexts: int = 1,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.channels, self.positions, self.contexts = channels, positions, contexts
        self.densities = densities = channels * positions * contexts  # as SymbolTables' tables
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = float(np.log(np.expm1(1 / scale / widths[i + 1])))
            self.matrices.append(
                nn.Parameter(torch.full((densities, widths[i + 1], widths[i]), init))
            )
            self.biases.append(nn.Parameter(torch.rand(densities, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(densities, widths[i + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """x: (densities, 1, L) -> the logit of each density's cumulative at x."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def _mass(self, x: torch.Tensor) -> torch.Tensor:
        """x: (densities, 1, L) -> P(x - 1/2 < Y < x + 1/2) under each density, (densities, L)."""
        # Both bounds in one pass through the small per-density network (it is op-bound).
        bounds = self._logits_cumulative(torch.cat([x - 0.5, x + 0.5], dim=2))
        lower, upper = bounds.chunk(2, dim=2)
        # Subtract in the tail where the sigmoids are far from saturation (numerics).
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.clamp_min(1e-9).squeeze(1)

    def likelihood(self, y: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """P(y - 1/2 < Y < y + 1/2) for every element of y (N, C, H, W), each under its
        channel's (and position's, and ``context``'s) density."""
        n, c, h, w = y.shape
        positions = self.positions
        if positions not in (1, h * w):
            raise ValueError(f"a prior for {positions} positions got a {h}x{w} latent")
        values = y.permute(1, 2, 3, 0).reshape(c, positions, 1, -1)  # (C, P, 1, L)
        values = values.expand(c, positions, self.contexts, values.shape[-1])
        p = self._mass(values.reshape(c * positions * self.contexts, 1, -1))
        p = p.reshape(c, positions, self.contexts, -1)
        if self.contexts > 1:  # the density of each element's context
            index = context.clamp(max=self.contexts - 1).permute(1, 2, 3, 0)
            p = p.gather(2, index.reshape(c, positions, 1, -1))
        return p.reshape(c, h, w, n).permute(3, 0, 1, 2)

    def forward(self, y: torch.Tensor, hard: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, likelihoods): with additive uniform noise in training, rounded in eval or
        when ``hard`` (training on what the coder codes: see the codec recipe's
        ``--hard-quantization``). Contexts come from the rounded latent, as the coder's."""
        rounded = torch.round(y).detach()
        noisy = self.training and not hard
        y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noisy else rounded
        context = nonzero_before(rounded) if self.contexts > 1 else None
        return y_hat, self.likelihood(y_hat, context)

    @torch.no_grad()
    def tables(self, tail_mass: float = 1e-7, max_radius: int = 255) -> SymbolTables:
        """Integer frequency tables over a symmetric range [-R, R] that holds all but
        ``tail_mass`` of every density; each symbol keeps a frequency of at least 1.
        """
        device = self.matrices[0].device
        grid = torch.arange(-max_radius - 1, max_radius + 2, device=device, dtype=torch.float32)
        cdf = torch.sigmoid(
            self._logits_cumulative(grid.view(1, 1, -1).expand(self.densities, 1, -1) + 0.5)
        ).squeeze(1)  # (densities, len(grid)): P(Y < k + 1/2)
        inside = (cdf > tail_mass / 2) & (cdf < 1 - tail_mass / 2)
        ks = grid[inside.any(0)]
        radius = int(max(abs(ks.min().item()), abs(ks.max().item()), 1)) if len(ks) else 1
        tables = self._quantized(min(radius, max_radius))
        radius = _trimmed_radius(tables)
        return tables if radius == tables.radius else self._quantized(radius)

    @torch.no_grad()
    def counted_tables(
        self, latents: np.ndarray, contexts: int = 8, prior_weight: float = 1.0
    ) -> SymbolTables:
        """Tables per channel, position and context fitted to ``latents``, the rounded
        latents (N, C, h, w) of the training set: each table is the histogram of the
        symbols coded with it, plus ``prior_weight`` pseudo-counts spread as the learned
        density (of the same context, or the last one the prior has), so a context the
        training set rarely shows keeps the learned density's shape.

        The learned density is a smooth stand-in for the coded latent's distribution; the
        counts are the distribution itself, and may be split by more contexts than were
        trained. The range is the learned tables' (see :meth:`tables`), trimmed by the same
        rule.
        """
        n, c, h, w = latents.shape
        if c != self.channels or self.positions not in (1, h * w):
            raise ValueError(f"latents of shape {latents.shape} do not fit this prior")
        radius = self.tables().radius
        size, positions = 2 * radius + 1, h * w
        symbols = np.clip(latents.reshape(n, c, positions), -radius, radius) + radius
        # The coder's own context rule, on the same symbols it will code.
        context = np.minimum(coding.nonzero_before(symbols != radius), contexts - 1)
        table = (np.arange(c)[:, None] * positions + np.arange(positions)) * contexts
        index = (table + context) * size + symbols
        counts = np.bincount(index.ravel(), minlength=c * positions * contexts * size)
        learned = self._learned_pmf(radius)  # (C, positions or 1, self.contexts, size)
        learned = learned[:, :, np.minimum(np.arange(contexts), self.contexts - 1)]
        learned = np.broadcast_to(learned, (c, positions, contexts, size))
        pmf = counts.reshape(-1, size) + prior_weight * learned.reshape(-1, size)
        tables = SymbolTables.from_pmf(pmf, radius, FREQUENCY_BITS, positions, contexts)
        trimmed = _trimmed_radius(tables)
        if trimmed == radius:
            return tables
        keep = slice(radius - trimmed, radius + trimmed + 1)
        return SymbolTables.from_pmf(pmf[:, keep], trimmed, FREQUENCY_BITS, positions, contexts)

    def _learned_pmf(self, radius: int) -> np.ndarray:
        """(channels, positions, contexts, 2R + 1): each density's mass at -R..R."""
        values = torch.arange(-radius, radius + 1, device=self.matrices[0].device).float()
        pmf = self._mass(values.view(1, 1, -1).expand(self.densities, 1, -1))
        return pmf.double().cpu().numpy().reshape(self.channels, self.positions, self.contexts, -1)

    def _quantized(self, radius: int) -> SymbolTables:
        pmf = self._learned_pmf(radius).reshape(self.densities, -1)
        return SymbolTables.from_pmf(pmf, radius, FREQUENCY_BITS, self.positions, self.contexts)


def _trimmed_radius(tables: SymbolTables) -> int:
    """The radius that leaves out the values every table gives only the least frequency
    (under 2**-16 everywhere): each symbol's row gets shorter, nothing else."""
    used = np.flatnonzero((tables.frequencies > 1).any(axis=0)) - tables.radius
    return int(max(np.abs(used).max(), 1))


def nonzero_before(latent: torch.Tensor) -> torch.Tensor:
    """For a rounded latent (N, C, H, W), how many earlier channels are nonzero at each
    position (the torch twin of :func:`latentwire.shared.coding.nonzero_before`)."""
    nonzero = (latent != 0).long()
    return torch.cumsum(nonzero, dim=1) - nonzero


def spread_prior(state: dict[str, torch.Tensor], prior: FactorizedPrior) -> None:
    """Fit a state dict's coarser prior to ``prior``, in place: each density of a per-channel
    (or per-channel-and-position) prior is copied to the finer prior's positions and
    contexts, so a trained codec starts a finer prior at the rate it had."""
    densities = prior.densities
    for key in [k for k in state if k.startswith("prior.")]:
        have = state[key].shape[0]
        if have != densities:
            if densities % have or have not in (prior.channels, densities // prior.contexts):
                raise ValueError(f"cannot spread a prior of {have} densities to {densities}")
            state[key] = state[key].repeat_interleave(densities // have, dim=0)
