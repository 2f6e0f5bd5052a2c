"""Recipe: train an image generator, the tutorial's GAN or DCGAN.

    latentwire train dcgan --dataset fashion-mnist --epochs 20 --features 128
    latentwire train gan --dataset mnist --epochs 30
    latentwire train dcgan --dataset folder:photos --channels 3 --height 64 --width 64 --flip

Every iteration updates the discriminator once (real images -> 1, generated -> 0, binary
cross-entropy on logits), then the generator once through the frozen discriminator (its
images -> 1), each with its own Adam. A grid of samples from one fixed noise batch is
saved every ``--sample-every`` epochs, so the grids show one set of samples evolving. The
same checkpoints, ``--resume`` (exact: the weights equal an uninterrupted run), progress
bars and torchrun support as the other recipes. ``--conditional`` feeds the class label to
both networks (Fashion-MNIST and MNIST).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset

from latentwire.shared.generation import generate, to_uint8
from latentwire.shared.models import ImageShape, get_model
from latentwire.shared.pixels import grid
from latentwire.training import autoencoder, distributed
from latentwire.training.adversarial import fit_adversarial
from latentwire.training.loop import add_loop_arguments

ARCHS = ("gan", "dcgan")
# `latentwire train gan` and `latentwire train dcgan` are this one recipe.
SUBCOMMAND_DEFAULTS = {arch: {"arch": arch} for arch in ARCHS}
SAMPLE_SEED = 1234  # the fixed noise batch of the sample grids


@dataclass
class TrainConfig(autoencoder.ImageDataConfig):
    arch: str = "dcgan"
    latent: int = 100
    features: int = 512  # dcgan: generator channels after the projection
    conditional: bool = False
    flip: bool = False  # random horizontal flips (small data sets)
    lr: float = 2e-4
    lr_d: float | None = None  # discriminator lr (default: --lr)
    beta1: float = 0.5
    sample_every: int = 1
    out: str = "runs/gan"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, not {self.arch!r}")


def labels_of(images: Dataset) -> torch.Tensor | None:
    """The class labels of a data set (or of a Subset of one); None where it has none."""
    if isinstance(images, Subset):
        labels = labels_of(images.dataset)
        return None if labels is None else labels[list(images.indices)]
    return getattr(images, "labels", None)


class LabelledImages(Dataset):
    """(image in [0, 1], label) pairs of a data set; label -1 where it has no classes."""

    def __init__(self, images: Dataset) -> None:
        self.images = images
        self.labels = labels_of(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.labels[index]) if self.labels is not None else -1
        return (self.images[index] + 1) / 2, label


def load_data(
    cfg: TrainConfig, runtime: distributed.Runtime
) -> tuple[LabelledImages, LabelledImages, ImageShape, int]:
    """(train, test, image shape, classes: 0 when unconditional)."""
    train, test, shape = autoencoder.load_data(cfg, runtime)
    train, test = LabelledImages(train), LabelledImages(test)
    classes = 0
    if cfg.conditional:
        if train.labels is None:
            raise ValueError(f"--conditional needs a data set with classes; {cfg.dataset} has none")
        classes = int(train.labels.max()) + 1
    return train, test, shape, classes


def build(cfg: TrainConfig, shape: ImageShape, classes: int) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``cfg.arch``."""
    options = {"shape": shape, "latent": cfg.latent, "classes": classes, "features": cfg.features}
    return get_model(cfg.arch, **options), get_model(f"{cfg.arch}-discriminator", **options)


def save_grid(generator: nn.Module, path: Path, n: int = 64) -> None:
    """Samples of the fixed noise batch (the generator must be in eval mode)."""
    grid(to_uint8(generate(generator, n, SAMPLE_SEED)), columns=8).save(path)


def random_hflip(images: torch.Tensor) -> torch.Tensor:
    """Each image of a batch mirrored left-right with probability 1/2."""
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def train_step(
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    labels: torch.Tensor | None,
) -> tuple[float, float]:
    """One discriminator update, then one generator update; returns (d loss, g loss)."""
    latent = (g.module if isinstance(g, DistributedDataParallel) else g).config.latent
    z = torch.randn(len(real), latent, device=real.device)
    fake = g(z, labels)
    d_loss = _bce(d(real, labels), 1.0) + _bce(d(fake.detach(), labels), 0.0)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    d.requires_grad_(False)  # frozen: the generator's loss flows through it, not into it
    g_loss = _bce(d(fake, labels), 1.0)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    d.requires_grad_(True)
    return d_loss.item(), g_loss.item()


def train(cfg: TrainConfig) -> nn.Module:
    runtime = distributed.setup(cfg.device)
    try:
        return _train(cfg, runtime)
    finally:
        distributed.teardown(runtime)


def _train(cfg: TrainConfig, runtime: distributed.Runtime) -> nn.Module:
    device, out = runtime.device, Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, _, shape, classes = load_data(cfg, runtime)
    torch.manual_seed(cfg.seed)
    generator, discriminator = (m.to(device) for m in build(cfg, shape, classes))
    betas = (cfg.beta1, 0.999)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas)

    def step(g: nn.Module, d: nn.Module, batch) -> tuple[float, float]:
        real, labels = batch
        real = real.to(device, non_blocking=True)
        if cfg.flip:
            real = random_hflip(real)
        return train_step(g, d, opt_g, opt_d, real, labels.to(device) if classes else None)

    def end_of_epoch(generator: nn.Module, epoch: int) -> dict[str, float]:
        if epoch % cfg.sample_every == 0:
            save_grid(generator, out / f"samples_epoch{epoch:04d}.png")
        return {}

    return fit_adversarial(
        cfg,
        runtime,
        generator,
        discriminator,
        opt_g,
        opt_d,
        train_set,
        step,
        end_of_epoch,
        drop_last=True,  # BatchNorm and the D/G balance want full batches
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    autoencoder.add_image_arguments(parser, defaults)
    parser.add_argument("--latent", type=int, default=defaults.latent, help="noise size")
    parser.add_argument(
        "--features",
        type=int,
        default=defaults.features,
        help="dcgan: generator channels after the projection (512 as published)",
    )
    parser.add_argument("--conditional", action="store_true", help="feed class labels to G and D")
    parser.add_argument("--flip", action="store_true", help="random horizontal flips")
    parser.add_argument("--lr-d", type=float, default=None, help="discriminator lr (default --lr)")
    parser.add_argument("--beta1", type=float, default=defaults.beta1, help="Adam beta1")
    parser.add_argument("--sample-every", type=int, default=defaults.sample_every)
    parser.add_argument("--arch", choices=ARCHS, default=defaults.arch, help=argparse.SUPPRESS)
    add_loop_arguments(parser, defaults)


def main(argv: list[str] | None = None) -> None:
    from latentwire.training.loop import recipe_main

    recipe_main("gan", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
