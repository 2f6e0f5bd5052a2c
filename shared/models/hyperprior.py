"""Hyperprior codecs: the any-size photo transforms with side information (Ballé et al.
2018, "scale hyperprior"; with means, Minnen et al. 2018, "mean-scale").

The analysis gives the latent ``y``; the hyper-analysis a small hyper-latent ``z`` (a
quarter of ``y``'s height and width), coded first with one learned table per channel.
The hyper-synthesis turns the integers of ``z`` into the coding parameters of ``y``: for
every element, one of :data:`~latentwire.shared.hyper.SCALES` fixed Gaussian tables and,
for mean-scale, an integer mean. It is trained aware of the integer arithmetic it is
exported to (:mod:`latentwire.shared.hyper`): weights, biases and activations take the
integer steps they will have, rounding passes gradients straight through, so the decoder's
exact integer network computes what was trained. Decoding computes no probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared import hyper
from latentwire.shared.models.codec import bmshj2018_transforms, windowed_latent
from latentwire.shared.models.entropy import FactorizedPrior
from latentwire.shared.models.registry import ImageShape, register_family


class _Bounded(torch.autograd.Function):
    """Clamp to [low, high]; outside, the gradient passes only where it leads back in
    (CompressAI's LowerBound, both ways). A plain straight-through clamp lets a level that
    wants to be below 0 (a channel that is always 0) drift without end, and with it the
    hyper-analysis; a plain clamp would stop a level pushed out from ever coming back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # Descent moves x by -grad: below low, only a negative gradient leads back in.
        passes = ((x >= ctx.low) | (grad < 0)) & ((x <= ctx.high) | (grad > 0))
        return grad * passes, None, None


def _ste_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return _Bounded.apply(x, low, high)


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round (half up, as the integer network does) in the forward pass, the identity in
    the backward pass."""
    return x + (torch.floor(x + 0.5) - x).detach()


class IntegerAwareLayer(nn.Module):
    """A conv (stride 1) or transposed conv (stride 2) whose weights, bias and output take
    the integer steps of :mod:`latentwire.shared.hyper` (weights 2**-B, activations
    2**-A), so that the exported integer layer computes the same numbers."""

    def __init__(self, kind: str, c_in: int, c_out: int, kernel: int, last: bool) -> None:
        super().__init__()
        self.kind, self.last = kind, last
        if kind == "conv":
            self.layer = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2)
        else:
            self.layer = nn.ConvTranspose2d(c_in, c_out, kernel, 2, kernel // 2, 1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        w_step = 2.0**-hyper.WEIGHT_BITS
        b_step = 2.0 ** -(hyper.WEIGHT_BITS + hyper.ACTIVATION_BITS)
        limit = hyper.WEIGHT_MAX * w_step
        # In float64: its integer steps and sums are then exact, as in the integer network.
        weight = _ste_round(self.layer.weight.double().clamp(-limit, limit) / w_step) * w_step
        bias = _ste_round(self.layer.bias.double() / b_step) * b_step
        if self.kind == "conv":
            out = F.conv2d(a, weight, bias, 1, self.layer.padding)
        else:
            out = F.conv_transpose2d(a, weight, bias, 2, self.layer.padding, 1)
        a_step = 2.0**-hyper.ACTIVATION_BITS
        out = _ste_round(out / a_step) * a_step
        if not self.last:
            out = out.clamp(0, hyper.ACTIVATION_MAX * a_step)  # the integer network's ReLU
        return out

    def integer(self) -> hyper.IntegerLayer:
        """This layer as the decoder computes it (weights (out, in, k, k), a deconv's
        flipped, as :func:`latentwire.shared.hyper._deconv` takes them)."""
        w = self.layer.weight.detach().double()
        limit = hyper.WEIGHT_MAX * 2.0**-hyper.WEIGHT_BITS
        w = torch.round(w.clamp(-limit, limit) * 2**hyper.WEIGHT_BITS)
        if self.kind == "deconv":  # ConvTranspose2d stores (in, out, k, k)
            w = w.transpose(0, 1).flip(2, 3)
        b = torch.round(
            self.layer.bias.detach().double() * 2 ** (hyper.WEIGHT_BITS + hyper.ACTIVATION_BITS)
        )
        return hyper.IntegerLayer(self.kind, w.long().numpy(), b.long().numpy())


@dataclass(frozen=True)
class HyperpriorConfig:
    shape: ImageShape  # the channels; with fixed_size also the one image size it codes
    filters: int = 64  # N: width of the transforms
    latent_channels: int = 96  # M: channels of y
    hyper_filters: int = 64  # width of the hyper-analysis and hyper-synthesis, and z's channels
    mean: bool = False  # mean-scale: the hyper-synthesis also predicts integer means
    # A codec of one image size (a user's domain): its IRs carry no size, the decoder
    # package does. Otherwise it takes images of any size.
    fixed_size: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        s = self.shape
        return (s.channels, s.height, s.width) if self.fixed_size else (s.channels, 0, 0)


@register_family("hyperprior", HyperpriorConfig)
class HyperpriorCodec(nn.Module):
    stride = 16

    def __init__(self, config: HyperpriorConfig) -> None:
        super().__init__()
        self.config = config
        c, n, m, h = (
            config.shape.channels,
            config.filters,
            config.latent_channels,
            config.hyper_filters,
        )
        self.analysis, self.synthesis = bmshj2018_transforms(c, n, m)
        self.hyper_analysis = nn.Sequential(
            nn.Conv2d(m, h, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(h, h, 5, 2, 2),
            nn.ReLU(),
            nn.Conv2d(h, h, 5, 2, 2),
        )
        self.z_prior = FactorizedPrior(h)
        outputs = 2 * m if config.mean else m
        self.hyper_synthesis = nn.ModuleList(
            [
                IntegerAwareLayer("deconv", h, h, 5, last=False),
                IntegerAwareLayer("deconv", h, h, 5, last=False),
                IntegerAwareLayer("conv", h, outputs, 3, last=True),
            ]
        )
        with torch.no_grad():  # start every element at a middling scale (about 0.8), not 0.11
            self.hyper_synthesis[-1].layer.bias[:m].fill_(hyper.SCALES / 3)
        self.any_size = not config.fixed_size
        s = config.shape
        stride = self.stride
        self.latent_shape = (
            (m, -(-s.height // stride), -(-s.width // stride)) if config.fixed_size else (m, 0, 0)
        )

    def parameters_of(
        self, z_hat: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale level, mean) of every element of y, as the integer hyper-synthesis gives
        them (levels and means whole numbers; gradients pass straight through)."""
        a = z_hat.double()
        for layer in self.hyper_synthesis:
            a = layer(a)
        a = _ste_round(a[..., : size[0], : size[1]]).float()
        m = self.config.latent_channels
        # Clipped as the integer network clips; a level pushed out of range can come back.
        level = _ste_clamp(a[:, :m], 0, hyper.SCALES - 1)
        if not self.config.mean:
            return level, torch.zeros_like(level)
        return level, _ste_clamp(a[:, m:], -hyper.MEAN_MAX, hyper.MEAN_MAX)

    def forward(
        self, x: torch.Tensor, hard: bool = False, reconstruct: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(reconstruction, likelihoods of y and z, flattened together). In training the
        rate sees y and z with uniform noise; the synthesis and the hyper-synthesis see
        them rounded (gradients straight through), as they will be. ``reconstruct=False``
        skips the synthesis (reconstruction None): training the entropy model alone."""
        y = self.analysis(x)
        z = self.hyper_latent(_ste_round(y))
        _, z_likelihood = self.z_prior(z, hard)
        z_int = _ste_round(z)
        level, mean = self.parameters_of(z_int, y.shape[-2:])
        noisy = self.training and not hard
        y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noisy else _ste_round(y)
        y_likelihood = _gaussian_mass(y_rate - mean, _sigma(level))
        x_hat = self.synthesis(_ste_round(y)) if reconstruct else None
        likelihoods = torch.cat([y_likelihood.flatten(1), z_likelihood.flatten(1)], dim=1)
        return x_hat, likelihoods

    @torch.inference_mode()
    def quantized_latent(self, x: torch.Tensor) -> np.ndarray:
        """The integer latents (N, M, h, w), the analysis run in windows (as the factorized
        codecs: memory bounded, the same numbers as one pass up to float rounding)."""
        return windowed_latent(self.analysis, x, self.stride, self.config.latent_channels)

    @torch.inference_mode()
    def side_information(self, latent: np.ndarray) -> np.ndarray:
        """The integer hyper-latent z (Nz, h/4, w/4) of one integer latent (M, h, w)."""
        y = torch.from_numpy(latent[None].astype(np.float32)).to(next(self.parameters()).device)
        return torch.round(self.hyper_latent(y)[0]).to(torch.int32).cpu().numpy()

    def hyper_latent(self, y_hat: torch.Tensor) -> torch.Tensor:
        """z (before rounding) of the rounded latent: of the integers the IR codes, so the
        encoder can compute it from them alone, in training as when coding."""
        return self.hyper_analysis(y_hat if self.config.mean else y_hat.abs())

    def integer_hyper_synthesis(self) -> hyper.HyperSynthesis:
        layers = tuple(layer.integer() for layer in self.hyper_synthesis)
        return hyper.HyperSynthesis(layers, self.config.latent_channels, self.config.mean)


def _sigma(level: torch.Tensor) -> torch.Tensor:
    """The standard deviation of scale levels (as latentwire.shared.hyper.scale_of)."""
    step = (np.log(hyper.SCALE_MAX) - np.log(hyper.SCALE_MIN)) / (hyper.SCALES - 1)
    return torch.exp(np.log(hyper.SCALE_MIN) + level * step)


def _gaussian_mass(value: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """P(value - 1/2 < V < value + 1/2) for V ~ N(0, sigma), computed in the upper tail
    (where it is accurate), at least 1e-9."""
    value = value.abs()
    upper = _normal_cdf((0.5 - value) / sigma)
    lower = _normal_cdf((-0.5 - value) / sigma)
    return (upper - lower).clamp_min(1e-9)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / np.sqrt(2.0))
