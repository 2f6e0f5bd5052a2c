"""Image generators and their discriminators: the tutorial's GAN and DCGAN, and the small
classifier whose features score them.

Every generator maps a noise batch ``z`` of shape (N, latent) to images (N, C, H, W) in
[0, 1]; every discriminator maps such images to one logit each. With ``classes > 0`` both
are conditional: the generator takes the class labels too (a one-hot vector beside z), and
the discriminator judges image and label together.

``gan`` (Goodfellow et al. 2014, as the tutorial builds it): generator z -> Linear 256 ->
512 -> 1024 (LeakyReLU 0.2 + BatchNorm after each) -> H*W*C with sigmoid; discriminator
H*W*C -> 512 -> 256 (LeakyReLU 0.2) -> 1.

``dcgan`` (Radford et al. 2016): generator z -> Linear to (H'/8)(W'/8) x ``features`` (BN
+ ReLU) -> three 5x5 stride-2 transposed convolutions ``features`` -> /2 -> /4 (512 -> 256
-> 128 by default; BN + ReLU) -> C with tanh; discriminator: four 5x5 stride-2 convolutions
32 -> 64 -> 128 -> 256 (LeakyReLU 0.2) -> Linear -> 1. H' x W' is the image padded up to
a multiple of 16 (Fashion-MNIST's 28x28 -> 32x32): the generator draws on that canvas and
crops back, the discriminator pads real and generated images alike. (A projection to
H'/16 with a fourth upsampling, tried first, collapsed to one image within 100 steps on
Fashion-MNIST, with either initialization; three upsamplings match the channel list.)

``classifier``: conv 32 -> conv 64 (3x3, BN, ReLU, 2x2 max pool each) -> Linear 128
(the feature layer) -> classes. Trained on the real data set, its 128 features stand in
for Inception's in the Fréchet distance (see ``training/recipes/gan.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentwire.shared.models.registry import ImageShape, register_family


@dataclass(frozen=True)
class GeneratorConfig:
    shape: ImageShape
    latent: int = 100
    classes: int = 0  # > 0: conditional on a class label
    features: int = 512  # dcgan: channels after the projection (halved at each upsampling)

    def __post_init__(self) -> None:
        if self.latent < 1 or self.classes < 0 or self.features < 16:
            raise ValueError("latent must be positive, classes >= 0 and features >= 16")


@dataclass(frozen=True)
class ClassifierConfig:
    shape: ImageShape
    classes: int = 10
    features: int = 128


def _one_hot(labels: torch.Tensor | None, classes: int, n: int) -> torch.Tensor | None:
    if classes == 0:
        return None
    if labels is None or labels.shape != (n,):
        raise ValueError(f"a conditional model needs one label per image ({n}), in [0, {classes})")
    return F.one_hot(labels.long(), classes).float()


def _canvas(side: int) -> int:
    return -(-side // 16) * 16


def _pad_to_canvas(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1], padded with black all round (centred) to multiples of 16."""
    h, w = x.shape[-2:]
    dh, dw = _canvas(h) - h, _canvas(w) - w
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=-1.0)


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialization: weights N(0, 0.02), BatchNorm scales N(1, 0.02).
    Without it the default (Kaiming) weights saturate the tanh and training collapses."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class _Conditional(nn.Module):
    """What the generators share: the noise size and the labels (sampling: shared/generation)."""

    config: GeneratorConfig

    def inputs(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        one_hot = _one_hot(labels, self.config.classes, len(z))
        return z if one_hot is None else torch.cat([z, one_hot.to(z)], 1)


@register_family("gan", GeneratorConfig)
class GANGenerator(_Conditional):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.shape.channels, config.shape.height, config.shape.width
        layers: list[nn.Module] = []
        width = config.latent + config.classes
        for out in (256, 512, 1024):
            layers += [nn.Linear(width, out), nn.LeakyReLU(0.2), nn.BatchNorm1d(out)]
            width = out
        self.body = nn.Sequential(*layers, nn.Linear(width, c * h * w), nn.Sigmoid())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        shape = self.config.shape
        flat = self.body(self.inputs(z, labels))
        return flat.view(-1, shape.channels, shape.height, shape.width)


@register_family("gan-discriminator", GeneratorConfig)
class GANDiscriminator(nn.Module):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        s = config.shape
        self.body = nn.Sequential(
            nn.Linear(s.channels * s.height * s.width + config.classes, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        flat = (x * 2 - 1).flatten(1)
        one_hot = _one_hot(labels, self.config.classes, len(x))
        if one_hot is not None:
            flat = torch.cat([flat, one_hot.to(flat)], 1)
        return self.body(flat).squeeze(1)


@register_family("dcgan", GeneratorConfig)
class DCGANGenerator(_Conditional):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        s = config.shape
        self.start = (config.features, _canvas(s.height) // 8, _canvas(s.width) // 8)
        size = config.features * self.start[1] * self.start[2]
        self.project = nn.Sequential(
            nn.Linear(config.latent + config.classes, size, bias=False),
            nn.BatchNorm1d(size),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        width = config.features
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 5, 2, 2, output_padding=1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, s.channels, 5, 2, 2, output_padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        canvas = self.body(self.project(self.inputs(z, labels)).view(-1, *self.start))
        s = self.config.shape
        top, left = (canvas.shape[-2] - s.height) // 2, (canvas.shape[-1] - s.width) // 2
        image = canvas[..., top : top + s.height, left : left + s.width]
        return (image + 1) / 2


@register_family("dcgan-discriminator", GeneratorConfig)
class DCGANDiscriminator(nn.Module):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        s = config.shape
        layers: list[nn.Module] = []
        width = s.channels + config.classes  # labels enter as constant planes
        for out in (32, 64, 128, 256):
            layers += [nn.Conv2d(width, out, 5, 2, 2), nn.LeakyReLU(0.2)]
            width = out
        cells = (_canvas(s.height) // 16) * (_canvas(s.width) // 16)
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * cells, 1))
        dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = _pad_to_canvas(x * 2 - 1)
        one_hot = _one_hot(labels, self.config.classes, len(x))
        if one_hot is not None:
            planes = one_hot.to(x)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, planes], 1)
        return self.body(x).squeeze(1)


@register_family("classifier", ClassifierConfig)
class Classifier(nn.Module):
    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        s = config.shape
        self.convs = nn.Sequential(
            nn.Conv2d(s.channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        cells = (s.height // 4) * (s.width // 4)
        self.features = nn.Sequential(nn.Linear(64 * cells, config.features), nn.ReLU())
        self.head = nn.Linear(config.features, config.classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The feature layer for images in [0, 1]: what the Fréchet distance compares."""
        return self.features(self.convs(x * 2 - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
