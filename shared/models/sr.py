"""Super-resolution models after SRGAN (Ledig et al. 2017, arXiv 1609.04802).

``srresnet``: the generator. A 9x9 conv to ``features`` maps, ``blocks`` residual blocks
(conv3-[BN]-PReLU-conv3-[BN], identity skip), a conv3-[BN] closing the global skip, one
conv + pixel-shuffle stage per factor of 2, and a 9x9 conv to the image's channels. It is
fully convolutional: any height and width, in and out in [0, 1].

With ``bicubic_skip`` the network predicts the difference to the bicubic upscale instead of
the image itself (as VDSR does): the same architecture, a much shorter way from random
weights to better-than-bicubic, which matters when training on a CPU.

``srgan-discriminator``: conv3 blocks with LeakyReLU 0.2, strides 1, 2 alternating, widths
doubling from ``widths[0]`` (the paper's 64 -> 512), then dense 1024 -> 1 (a logit). An
adaptive average pool before the dense layers lets it judge any patch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared.models.registry import register_family


@dataclass(frozen=True)
class SRResNetConfig:
    channels: int = 3
    scale: int = 2
    features: int = 64
    blocks: int = 16
    batch_norm: bool = False
    bicubic_skip: bool = True

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise ValueError(f"scale must be a power of 2, not {self.scale}")
        if self.features < 1 or self.blocks < 0:
            raise ValueError("features must be positive and blocks non-negative")


def _norm(features: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(features) if on else nn.Identity()


class ResidualBlock(nn.Module):
    def __init__(self, features: int, batch_norm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            _norm(features, batch_norm),
            nn.PReLU(features),
            nn.Conv2d(features, features, 3, padding=1),
            _norm(features, batch_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_family("srresnet", SRResNetConfig)
class SRResNet(nn.Module):
    def __init__(self, config: SRResNetConfig) -> None:
        super().__init__()
        self.config = config
        c, f = config.channels, config.features
        self.head = nn.Sequential(nn.Conv2d(c, f, 9, padding=4), nn.PReLU(f))
        self.body = nn.Sequential(
            *(ResidualBlock(f, config.batch_norm) for _ in range(config.blocks)),
            nn.Conv2d(f, f, 3, padding=1),
            _norm(f, config.batch_norm),
        )
        stages = []
        for _ in range(int(math.log2(config.scale))):
            stages += [nn.Conv2d(f, 4 * f, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(f)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(f, c, 9, padding=4)
        if config.bicubic_skip:
            # Start as the bicubic upscale: the residual branch begins at zero.
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, C, scale*H, scale*W), not clamped."""
        features = self.head(x)
        y = self.tail(self.upsample(features + self.body(features)))
        if self.config.bicubic_skip:
            y = y + F.interpolate(
                x, scale_factor=self.config.scale, mode="bicubic", align_corners=False
            )
        return y


@dataclass(frozen=True)
class DiscriminatorConfig:
    channels: int = 3
    widths: tuple[int, ...] = (64, 128, 256, 512)
    dense: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))  # lists from JSON manifests
        if not self.widths or min(self.widths) < 1 or self.dense < 1:
            raise ValueError("widths and dense must be positive")


@register_family("srgan-discriminator", DiscriminatorConfig)
class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.channels
        for i, width in enumerate(config.widths):
            for stride in (1, 2):
                layers.append(nn.Conv2d(c_in, width, 3, stride=stride, padding=1))
                if i or stride == 2:  # the paper has no BN after the first conv
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.LeakyReLU(0.2))
                c_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, config.dense),
            nn.LeakyReLU(0.2),
            nn.Linear(config.dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N,) logits that the images are real."""
        return self.classifier(self.features(x)).squeeze(1)
