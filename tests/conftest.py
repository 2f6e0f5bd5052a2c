import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTWIRE_DATA", REPO.parent / "shared" / "data"))
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets beside the checkout (../shared/data); the suite needs them."""
    if not (DATA / "fashion_mnist").is_dir():
        pytest.fail(f"real data sets not found at {DATA}; set LATENTWIRE_DATA")
    return DATA


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Unpacked IDX files go to one cache for the whole session, never the user's.
    monkeypatch.setenv("LATENTWIRE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("LATENTWIRE_DATA", str(DATA))


@pytest.fixture(scope="session")
def tiny_codec(tmp_path_factory, data_dir):
    """A codec trained here for one short epoch on real Fashion-MNIST and exported: the
    whole train -> export -> decode path, independent of the shipped models."""
    from latentwire.training.checkpoint import latest_checkpoint
    from latentwire.training.export import export
    from latentwire.training.recipes.codec import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_codec")
    train(
        TrainConfig(
            dataset="fashion-mnist",
            data_dir=str(data_dir),
            epochs=1,
            limit=2048,
            quality=4,
            positional_prior=True,  # per-position, per-context tables (format-2 package)
            prior_contexts=4,
            out=str(root / "run"),
            progress=False,
            command="latentwire train codec (test)",
        )
    )
    export(latest_checkpoint(root / "run"), root / "models" / "tiny", "tiny-codec-q4")
    return root / "models"


def tiny_photo_config(data_dir, out, **changes):
    """A photo codec run small enough for a test: N = 16, 64-pixel patches."""
    from latentwire.training.recipes.codec import TrainConfig

    settings = dict(
        dataset="photos",
        data_dir=str(data_dir),
        transform="bmshj2018",
        filters=16,
        latent_channels=24,
        patch=64,
        patches_per_epoch=256,
        batch_size=16,
        epochs=1,
        quality=3,
        out=str(out),
        progress=False,
        command="latentwire train codec (test)",
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="session")
def tiny_photo_codec(tmp_path_factory, data_dir):
    """An any-size photo codec trained here briefly on real photo patches and exported as
    `photo-tiny-q3`: the whole path (train, export, code), quickly."""
    from latentwire.training.checkpoint import latest_checkpoint
    from latentwire.training.export import export
    from latentwire.training.recipes.codec import train

    root = tmp_path_factory.mktemp("tiny_photo_codec")
    train(tiny_photo_config(data_dir, root / "run"))
    export(latest_checkpoint(root / "run"), root / "models" / "photo", "photo-tiny-q3")
    return root / "models"
