"""The prototype autoencoders, as registered model families.

Every autoencoder takes images scaled to [-1, 1] with shape (N, C, H, W) and has an
``encoder`` (image -> latent) and a ``decoder`` (latent -> image), so a rate-distortion
codec can reuse any of them as its analysis and synthesis transforms.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared.models.registry import ImageShape, register_family


class Autoencoder(nn.Module):
    encoder: nn.Module
    decoder: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@dataclass(frozen=True)
class MLPConfig:
    shape: ImageShape
    hidden: int = 64


@register_family("mlp", MLPConfig)
class MLPAutoencoder(Autoencoder):
    """The tutorial autoencoder: flatten -> Linear(hidden) -> Linear(H*W*C), linear output."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        s = config.shape
        pixels = s.channels * s.height * s.width
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, config.hidden), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.Linear(config.hidden, pixels), nn.Unflatten(1, (s.channels, s.height, s.width))
        )


@dataclass(frozen=True)
class ConvConfig:
    shape: ImageShape


class _PadTo(nn.Module):
    """Replicate-pad the bottom/right so height and width are multiples of ``multiple``."""

    def __init__(self, multiple: int) -> None:
        super().__init__()
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x


class _CropTo(nn.Module):
    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.height, : self.width]


@register_family("conv", ConvConfig)
class ConvAutoencoder(Autoencoder):
    """The MNIST prototype: conv 1->8->16->16 with two 2x2 max-pools, mirrored with upsampling.

    The latent is 16 x H/4 x W/4. Sizes that are not multiples of 4 are padded on the way
    in and cropped on the way out.
    """

    def __init__(self, config: ConvConfig) -> None:
        super().__init__()
        self.config = config
        c = config.shape.channels
        self.encoder = nn.Sequential(
            _PadTo(4),
            nn.Conv2d(c, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(16, 8, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(8, c, 3, padding=1),
            nn.Tanh(),
            _CropTo(config.shape.height, config.shape.width),
        )


@dataclass(frozen=True)
class ConvLinearConfig:
    shape: ImageShape
    channels: tuple[int, ...] = (32, 64)  # one stride-2 conv per entry
    latent_dim: int = 32  # the size of the IR vector

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        if not self.channels:
            raise ValueError("convlinear needs at least one conv layer")


@register_family("convlinear", ConvLinearConfig)
class ConvLinearAutoencoder(Autoencoder):
    """The Fashion-MNIST prototype: N strided convs -> Linear -> IR -> Linear -> N transposed convs.

    Works for any height and width: each stride-2 conv takes a side s to ceil(s/2), and
    each transposed conv picks its output padding to return to the exact size.
    """

    def __init__(self, config: ConvLinearConfig) -> None:
        super().__init__()
        self.config = config
        s = config.shape
        sizes = [(s.height, s.width)]
        for _ in config.channels:
            h, w = sizes[-1]
            sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
        widths = [s.channels, *config.channels]

        down: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            down += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        h, w = sizes[-1]
        flat = widths[-1] * h * w
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, config.latent_dim))

        up: list[nn.Module] = [
            nn.Linear(config.latent_dim, flat),
            nn.ReLU(),
            nn.Unflatten(1, (widths[-1], h, w)),
        ]
        for i in range(len(config.channels), 0, -1):
            target_h, target_w = sizes[i - 1]
            up.append(
                nn.ConvTranspose2d(
                    widths[i],
                    widths[i - 1],
                    3,
                    stride=2,
                    padding=1,
                    output_padding=(1 - target_h % 2, 1 - target_w % 2),
                )
            )
            up.append(nn.ReLU() if i > 1 else nn.Tanh())
        self.decoder = nn.Sequential(*up)
