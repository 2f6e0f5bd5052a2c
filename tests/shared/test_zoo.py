"""The default models that ship inside the package: metadata checked against the real model."""

import pytest
import torch

from latentwire.shared.models.loading import load_model
from latentwire.shared.package import (
    PackageError,
    file_sha256,
    find_package,
    list_packages,
    read_manifest,
)
from latentwire.training.data import load_datasets
from latentwire.training.metrics import evaluate_reconstruction

PACKAGES = list_packages()
AUTOENCODERS = [p for p in PACKAGES if read_manifest(p).family in ("mlp", "conv", "convlinear")]


def test_the_default_autoencoders_ship():
    ids = {read_manifest(p).id for p in PACKAGES}
    assert {"fashion-mnist-convlinear", "fashion-mnist-conv", "mnist-conv"} <= ids


@pytest.mark.parametrize("package", AUTOENCODERS, ids=lambda p: p.name)
def test_shipped_autoencoder_reproduces_its_recorded_metrics(package, data_dir):
    model, manifest = load_model(package)
    assert manifest.parameters == sum(p.numel() for p in model.parameters())
    assert manifest.training["command"].startswith("latentwire train ae")
    assert manifest.metrics["test_images"] == 10000
    _, test_set, _ = load_datasets(manifest.dataset, data_dir=data_dir)
    metrics = evaluate_reconstruction(model, test_set, torch.device("cpu"), progress=False)
    assert metrics["psnr_db"] == pytest.approx(manifest.metrics["psnr_db"], abs=0.01)
    assert metrics["ssim"] == pytest.approx(manifest.metrics["ssim"], abs=0.001)


def test_tampered_weights_are_refused(tmp_path):
    import shutil

    source = find_package("mnist-conv")
    shutil.copytree(source, tmp_path / "pkg")
    weights = tmp_path / "pkg" / "model.safetensors"
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert file_sha256(weights) != read_manifest(source).weights_sha256
    with pytest.raises(PackageError, match="do not match"):
        load_model(tmp_path / "pkg")


def test_unknown_model_id_lists_the_known_ones():
    with pytest.raises(PackageError, match="mnist-conv"):
        find_package("no-such-model")
