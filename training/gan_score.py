"""The quality score of a generator, computed here: a Fréchet distance on the features of
a small classifier trained on the same data, and the class coverage.

No pretrained Inception network can be fetched in this workplace, so the published FID
(Inception-v3 pool features, 2048-d, ImageNet-trained) is not what this is. This is the
same formula, ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), over the 128-d
feature layer of ``classifier`` (``latentwire train classifier``), between ``n``
generated images and the ``n`` real test images. Its numbers are comparable only with
others computed with the same classifier and ``n``; the floor is the score of real
training images against the same test images ("real vs real"), which no generator can be
expected to beat. Coverage: how many classes the classifier assigns at least half their
fair share (n / classes / 2) of the generated images to; mode collapse shows up there.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from latentwire.shared.generation import generate


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
    from pathlib import Path

    from latentwire.shared.models.loading import load_model
    from latentwire.shared.package import package_folder

    if Path(model).is_file():
        from latentwire.training.export import model_from_checkpoint

        classifier = model_from_checkpoint(model)[0]
        return classifier, str(model)
    classifier, manifest = load_model(package_folder(model))
    if manifest.task != "classify":
        raise ValueError(f"{manifest.id} is a {manifest.task} model, not a classifier")
    return classifier, manifest.id
