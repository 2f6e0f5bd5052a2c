import gzip
import shutil
import subprocess
import sys

import pytest
import torch

from latentwire.shared.models import ImageShape
from latentwire.training.data import DatasetError, load_datasets


@pytest.mark.parametrize(("name", "mean"), [("fashion-mnist", 0.2860), ("mnist", 0.1307)])
def test_idx_data_sets_read_the_real_files(data_dir, name, mean):
    train, test, shape = load_datasets(name, data_dir=data_dir)
    assert (len(train), len(test)) == (60000, 10000)
    assert shape == ImageShape(1, 28, 28)
    x = train[0]
    assert x.shape == (1, 28, 28) and x.min() >= -1 and x.max() <= 1
    # The published training-set pixel mean, a check that these are the real images.
    assert train.images.float().mean().item() / 255 == pytest.approx(mean, abs=1e-4)


def test_missing_data_set_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_datasets("fashion-mnist", data_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "fashion_mnist") in message and "--download" in message


def test_corrupt_data_set_is_a_clear_error(tmp_path, data_dir):
    bad = tmp_path / "fashion_mnist"
    shutil.copytree(data_dir / "fashion_mnist", bad)
    (bad / "train-images-idx3-ubyte.gz").chmod(0o644)
    data = (bad / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt"):
        load_datasets("fashion-mnist", data_dir=tmp_path)


def test_wrong_idx_content_is_a_clear_error(tmp_path, data_dir):
    bad = tmp_path / "mnist"
    shutil.copytree(data_dir / "mnist", bad)
    target = bad / "t10k-images-idx3-ubyte.gz"
    target.chmod(0o644)
    target.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 40))
    with pytest.raises(DatasetError, match="could not be read"):
        load_datasets("mnist", data_dir=tmp_path)


def test_folder_of_real_photos_at_any_geometry(data_dir):
    shape = ImageShape(3, 48, 64)
    for fit in ("resize", "center-crop", "random-crop"):
        train, test, got = load_datasets(f"folder:{data_dir / 'kodak'}", shape=shape, fit=fit)
        assert got == shape
        assert len(train) + len(test) == 24 and len(test) >= 1
        assert train[0].shape == (3, 48, 64)
    gray, _, _ = load_datasets(f"folder:{data_dir / 'set5'}", shape=ImageShape(1, 33, 17))
    assert gray[0].shape == (1, 33, 17)
    assert torch.isfinite(gray[0]).all()


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no images found"):
        load_datasets(f"folder:{tmp_path}", shape=ImageShape(1, 28, 28))


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "latentwire.shared.cli", "train", "ae", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Fashion-MNIST not found" in result.stderr and str(tmp_path) in result.stderr
    assert "Traceback" not in result.stderr
