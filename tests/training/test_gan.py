"""GAN and DCGAN: shapes, a real training step, exact resume, seeds, the score, export."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from latentwire.shared.generation import generate
from latentwire.shared.images import UNIT
from latentwire.shared.models import ImageShape, get_model
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import find_package
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.data import LabelledImages, load_datasets
from latentwire.training.recipes.gan import frechet_distance, score_generator, train_step

CLI = [sys.executable, "-m", "latentwire.shared.cli"]


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 20), (3, 48, 64)])
@pytest.mark.parametrize("classes", [0, 10])
def test_shapes_for_several_sizes(arch, shape, classes):
    shape = ImageShape(*shape)
    g = get_model(arch, shape=shape, classes=classes, features=32).eval()
    d = get_model(f"{arch}-discriminator", shape=shape, classes=classes, features=32)
    labels = torch.arange(5) % 10 if classes else None
    images = g(torch.randn(5, 100), labels)
    assert images.shape == (5, shape.channels, shape.height, shape.width)
    assert images.min() >= 0 and images.max() <= 1
    assert d(images, labels).shape == (5,)


def test_a_conditional_model_needs_labels():
    g = get_model("dcgan", shape=ImageShape(1, 28, 28), classes=10, features=32)
    with pytest.raises(ValueError, match="one label per image"):
        g(torch.randn(2, 100))


@pytest.fixture(scope="module")
def fashion():
    train, test, _ = load_datasets("fashion-mnist", pixel_range=UNIT)  # what generators draw
    return LabelledImages(train), LabelledImages(test)


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_a_training_step_moves_both_networks_the_right_way(arch, fashion):
    torch.manual_seed(0)
    shape = ImageShape(1, 28, 28)
    g = get_model(arch, shape=shape, features=64)
    d = get_model(f"{arch}-discriminator", shape=shape, features=64)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.stack([fashion[0][i][0] for i in range(64)])
    z = torch.randn(64, 100)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def losses():
        with torch.no_grad():
            fake = g(z)
            real_logits, fake_logits = d(real), d(fake)
        d_loss = bce(real_logits, torch.ones(64)) + bce(fake_logits, torch.zeros(64))
        return d_loss.item(), bce(fake_logits, torch.ones(64)).item()

    g_before = [p.clone() for p in g.parameters()]
    d_before = [p.clone() for p in d.parameters()]
    d_loss0, g_loss0 = losses()
    for _ in range(5):
        train_step(g, d, opt_g, opt_d, real, None)
    d_loss1, g_loss1 = losses()
    assert all(not torch.equal(a, b) for a, b in zip(g_before, g.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(d_before, d.parameters(), strict=True))
    assert d_loss1 < d_loss0  # the discriminator learns to tell them apart
    assert abs(g_loss1 - g_loss0) > 1e-3


def _run(args, out):
    base = ["train", *args, "--limit", "256", "--batch-size", "64", "--no-progress"]
    subprocess.run([*CLI, *base, "--out", str(out)], check=True, capture_output=True)


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_resume_equals_an_uninterrupted_run(arch, tmp_path):
    args = [arch, "--dataset", "fashion-mnist", "--features", "32", "--flip"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _run([*args, "--epochs", "2"], whole)
    _run([*args, "--epochs", "1"], resumed)
    _run([*args, "--epochs", "2", "--resume"], resumed)
    a, b = load_checkpoint(latest_checkpoint(whole)), load_checkpoint(latest_checkpoint(resumed))
    for part in ("model", "discriminator"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), (part, name)
    assert a["config"]["model"]["family"] == arch
    assert (whole / "samples_epoch0002.png").stat().st_size > 0


def test_the_same_seed_gives_the_same_images():
    g = get_model("dcgan", shape=ImageShape(1, 28, 28), features=32).eval()
    a, b, c = generate(g, 8, seed=3), generate(g, 8, seed=3), generate(g, 8, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_frechet_distance_against_a_known_answer():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 4))
    b = rng.normal(size=(20_000, 4)) * 2 + 1  # N(1, 4I): ||mu||^2 = 4, Tr = 4 + 16 - 2*8
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(4 + 4 + 16 - 16, rel=0.05)


def test_shipped_generators_score_as_published_and_dcgan_beats_gan(fashion):
    """Rescored on 2,000 images: both far from the real-data floor's level, DCGAN closer."""
    scorer = load_model(find_package("fashion-mnist-classifier"))[0]
    scores = {}
    for arch in ("gan", "dcgan"):
        generator, manifest = load_model(find_package(f"fashion-mnist-{arch}"))
        scores[arch] = score_generator(generator, scorer, *fashion, n=2000)
        assert scores[arch]["classes_covered"] >= 8
        assert scores[arch]["frechet_distance"] > scores[arch]["real_floor"]
        assert manifest.metrics["frechet_distance"] > manifest.metrics["real_floor"]
    assert scores["dcgan"]["frechet_distance"] < scores["gan"]["frechet_distance"]
