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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from latentwire.shared.generation import generate, to_uint8
from latentwire.shared.images import UNIT, grid
from latentwire.shared.models import ImageShape, get_model
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import package_folder
from latentwire.training import distributed
from latentwire.training.adversarial import fit_adversarial
from latentwire.training.checkpoint import model_from_checkpoint
from latentwire.training.data import (
    ImageDataConfig,
    LabelledImages,
    add_image_arguments,
    load_image_data,
    random_hflip,
    run_datasets,
)
from latentwire.training.loop import add_loop_arguments, recipe_main

ARCHS = ("gan", "dcgan")
FAMILIES = ARCHS
TASK = "generate"
PIXELS = UNIT
# `latentwire train gan` and `latentwire train dcgan` are this one recipe.
SUBCOMMAND_DEFAULTS = {arch: {"arch": arch} for arch in ARCHS}
SAMPLE_SEED = 1234  # the fixed noise batch of the sample grids


@dataclass
class TrainConfig(ImageDataConfig):
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


def load_data(
    cfg: TrainConfig, runtime: distributed.Runtime
) -> tuple[LabelledImages, LabelledImages, ImageShape, int]:
    """(train, test, image shape, classes: 0 when unconditional)."""
    train, test, shape = load_image_data(cfg, PIXELS)
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


# The quality score of a generator, computed here: a Fréchet distance on the features of a
# small classifier trained on the same data, and the class coverage.
#
#
# No pretrained Inception network can be fetched in this workplace, so the published FID
# (Inception-v3 pool features, 2048-d, ImageNet-trained) is not what this is. This is the
# same formula, ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), over the 128-d
# feature layer of ``classifier`` (``latentwire train classifier``), between ``n``
# generated images and the ``n`` real test images. Its numbers are comparable only with
# others computed with the same classifier and ``n``; the floor is the score of real
# training images against the same test images ("real vs real"), which no generator can be
# expected to beat. Coverage: how many classes the classifier assigns at least half their
# fair share (n / classes / 2) of the generated images to; mode collapse shows up there.


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Between Gaussians fitted to the rows of ``a`` and ``b`` (float64, via eigh)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric
    # PSD matrix, so no general (and numerically touchy) matrix square root is needed.
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(0))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(middle.clip(0)).sum()
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


@torch.inference_mode()
def features(classifier: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, F) float64, predicted classes (N,)) of images (N, C, H, W) in [0, 1]."""
    feats, predicted = [], []
    for start in range(0, len(images), 1000):
        f = classifier.embed(images[start : start + 1000])
        feats.append(f.double().numpy())
        predicted.append(classifier.head(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(predicted)


def real_images(data: Dataset, n: int) -> torch.Tensor:
    """The first ``n`` images of a LabelledImages data set, (N, C, H, W) in [0, 1]."""
    images = []
    for batch, _ in DataLoader(data, batch_size=1000):
        images.append(batch)
        if sum(len(b) for b in images) >= n:
            break
    return torch.cat(images)[:n]


def coverage(predicted: np.ndarray, classes: int) -> tuple[int, list[float]]:
    """(classes with at least half their fair share, the share of each class)."""
    shares = np.bincount(predicted, minlength=classes) / len(predicted)
    return int((shares >= 0.5 / classes).sum()), [round(float(s), 4) for s in shares]


def score(
    classifier: nn.Module, images: torch.Tensor, reference: np.ndarray, classes: int
) -> dict[str, object]:
    f, predicted = features(classifier, images)
    covered, shares = coverage(predicted, classes)
    return {
        "frechet_distance": round(frechet_distance(f, reference), 3),
        "classes_covered": covered,
        "class_shares": shares,
    }


def score_generator(
    generator: nn.Module,
    classifier: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    n: int = 10_000,
    seed: int = 0,
) -> dict[str, object]:
    """The generator's score and the real-vs-real floor, both against ``n`` test images."""
    classifier = classifier.cpu().eval()
    classes = classifier.config.classes
    reference, _ = features(classifier, real_images(test_set, n))
    floor = score(classifier, real_images(train_set, n), reference, classes)
    generated = score(classifier, generate(generator.cpu().eval(), n, seed), reference, classes)
    return {
        **generated,
        "real_floor": floor["frechet_distance"],
        "real_classes_covered": floor["classes_covered"],
        "n": n,
        "seed": seed,
    }


def load_scorer(model: str) -> tuple[nn.Module, str]:
    """(classifier, its id) from a package folder, a shipped model id or a checkpoint."""
    if Path(model).is_file():
        classifier = model_from_checkpoint(model)[0]
        return classifier, str(model)
    classifier, manifest = load_model(package_folder(model))
    if manifest.task != "classify":
        raise ValueError(f"{manifest.id} is a {manifest.task} model, not a classifier")
    return classifier, manifest.id


def labelled_sets(cfg: dict[str, Any], data_dir: str | None) -> tuple[Dataset, Dataset]:
    """(train, test) of a run's data set as (image in [0, 1], label) pairs."""
    train_set, test_set = run_datasets(cfg, data_dir, PIXELS)
    return LabelledImages(train_set), LabelledImages(test_set)


def default_id(cfg: dict[str, Any]) -> str:
    return f"{cfg['dataset']}-{cfg['model']['family']}"


def metrics(
    model: nn.Module,
    cfg: dict[str, Any],
    data_dir: str | None,
    classifier: str | None = None,
    n: int = 10_000,
) -> dict[str, Any]:
    """For the package: the score, with the data set's classifier (default: the shipped
    ``<dataset>-classifier``)."""
    scorer, scorer_id = load_scorer(classifier or f"{cfg['dataset']}-classifier")
    found = score_generator(model, scorer, *labelled_sets(cfg, data_dir), n)
    return {**found, "classifier": scorer_id}


def summary(metrics: dict[str, Any]) -> str:
    return (
        f"Fréchet distance {metrics['frechet_distance']} (real data {metrics['real_floor']}), "
        f"{metrics['classes_covered']} classes covered"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    add_image_arguments(parser, defaults)
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
    recipe_main("gan", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
