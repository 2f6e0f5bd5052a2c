"""Data sets: Fashion-MNIST, MNIST (through torchvision's classes) and any folder of images.

Every data set yields float tensors of shape (C, H, W) scaled to [-1, 1].

Offline, the MNIST-family loaders read the original IDX files (gzipped or not) from a data
folder: ``--data-dir``, else ``$LATENTWIRE_DATA``, else ``../shared/data`` beside a checkout.
torchvision expects them uncompressed under ``<root>/<Class>/raw``, so they are unpacked
once into a cache folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from latentwire.shared.models import ImageShape

DATA_ENV = "LATENTWIRE_DATA"
CACHE_ENV = "LATENTWIRE_CACHE"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


class DatasetError(RuntimeError):
    """A data set is missing or unreadable; the message says where we looked and what to do."""


@dataclass(frozen=True)
class _IdxDataset:
    name: str
    torchvision_class: type
    folder: str  # its folder name under the data directory


_IDX_DATASETS = {
    "fashion-mnist": _IdxDataset("Fashion-MNIST", datasets.FashionMNIST, "fashion_mnist"),
    "mnist": _IdxDataset("MNIST", datasets.MNIST, "mnist"),
}
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def default_data_dirs() -> list[Path]:
    """Where data sets are looked for, in order, when no --data-dir is given."""
    dirs = []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]))
    checkout = Path(__file__).resolve().parents[1]  # the repo root in a checkout
    dirs += [checkout.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return list(dict.fromkeys(dirs))


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "latentwire"


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W); ``labels`` (N,) where the
    data set has classes (kept beside the images: items are the images alone)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float().div(127.5).sub(1.0)

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        # DataLoader's batched fetch: one indexing op per batch instead of one per image.
        return list(self.images[indices].float().div(127.5).sub(1.0))


def _find_idx_folder(spec: _IdxDataset, data_dirs: list[Path]) -> Path | None:
    for base in data_dirs:
        for folder in (base / spec.folder, base):
            if all(
                (folder / name).is_file() or (folder / f"{name}.gz").is_file()
                for name in _IDX_FILES
            ):
                return folder
    return None


def _unpack_idx(spec: _IdxDataset, source: Path) -> Path:
    """Unpack the IDX files into ``<cache>/<key>/<Class>/raw``; return the torchvision root."""
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    root = cache_dir() / "idx" / key
    raw = root / spec.torchvision_class.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in _IDX_FILES:
        target = raw / name
        plain, packed = source / name, source / f"{name}.gz"
        src = plain if plain.is_file() else packed
        if target.is_file() and target.stat().st_mtime >= src.stat().st_mtime:
            continue
        # A private temp name: several runs may unpack the same files at once.
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.")
        try:
            with (
                gzip.open(src) if src.suffix == ".gz" else open(src, "rb") as f_in,
                open(fd, "wb") as f_out,
            ):
                shutil.copyfileobj(f_in, f_out)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            Path(tmp).unlink(missing_ok=True)
            raise DatasetError(f"{spec.name}: {src} is corrupt ({e}); replace it.") from None
        os.replace(tmp, target)
    return root


def load_idx_dataset(
    name: str, train: bool, data_dir: str | os.PathLike | None = None, download: bool = False
) -> TensorImages:
    spec = _IDX_DATASETS[name]
    data_dirs = [Path(data_dir)] if data_dir else default_data_dirs()
    folder = _find_idx_folder(spec, data_dirs)
    if folder is not None:
        root = _unpack_idx(spec, folder)
    elif download:
        root = cache_dir() / "download"
    else:
        looked = ", ".join(str(d / spec.folder) for d in data_dirs)
        raise DatasetError(
            f"{spec.name} not found. Looked for {', '.join(f + '[.gz]' for f in _IDX_FILES)} "
            f"in: {looked}. Point --data-dir (or ${DATA_ENV}) at the folder that holds them, "
            f"or pass --download to fetch them with torchvision."
        )
    try:
        ds = spec.torchvision_class(root=str(root), train=train, download=download and not folder)
    except (RuntimeError, AssertionError, ValueError, OSError) as e:
        where = folder or root
        raise DatasetError(
            f"{spec.name} in {where} could not be read ({e or type(e).__name__}); "
            "the files are corrupt or not the original IDX files."
        ) from None
    return TensorImages(ds.data.unsqueeze(1).contiguous(), ds.targets.clone())


class ImageFiles(Dataset):
    """Every image file under a folder (recursively), brought to one geometry.

    ``fit``: ``resize`` squashes to H x W; ``center-crop`` resizes the short side and crops
    the centre; ``random-crop`` takes a random H x W window (images smaller are resized up).
    """

    FITS = ("resize", "center-crop", "random-crop")

    def __init__(self, files: list[Path], shape: ImageShape, fit: str = "center-crop") -> None:
        if fit not in self.FITS:
            raise ValueError(f"fit must be one of {self.FITS}, not {fit!r}")
        self.files, self.shape = files, shape
        self.mode = "L" if shape.channels == 1 else "RGB"
        size = (shape.height, shape.width)
        steps: list = [v2.PILToTensor()]
        if fit == "resize":
            steps.append(v2.Resize(size, antialias=True))
        elif fit == "center-crop":
            steps += [v2.Resize(min(size), antialias=True), v2.CenterCrop(size)]
        else:
            steps.append(v2.RandomCrop(size, pad_if_needed=True, padding_mode="reflect"))
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            pixels = self.transform(image.convert(self.mode))
        return pixels.float().div(127.5).sub(1.0)


def image_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist")
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise DatasetError(
            f"no images found under {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return files


def load_datasets(
    dataset: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    shape: ImageShape | None = None,
    fit: str = "center-crop",
    test_fraction: float = 0.1,
) -> tuple[Dataset, Dataset, ImageShape]:
    """(train, test, image shape) for ``fashion-mnist``, ``mnist`` or ``folder:PATH``.

    A folder is split deterministically: every file whose name hashes into the last
    ``test_fraction`` goes to the test set.
    """
    if dataset in _IDX_DATASETS:
        train = load_idx_dataset(dataset, True, data_dir, download)
        test = load_idx_dataset(dataset, False, data_dir, download)
        return train, test, ImageShape(1, 28, 28)
    if dataset.startswith("folder:"):
        if shape is None:
            raise ValueError("a folder data set needs --channels, --height and --width")
        files = image_files(dataset.removeprefix("folder:"))

        def is_test(p: Path) -> bool:
            h = int(hashlib.sha256(p.name.encode()).hexdigest()[:8], 16)
            return h / 0xFFFFFFFF < test_fraction

        train_files = [p for p in files if not is_test(p)]
        test_files = [p for p in files if is_test(p)] or train_files[-1:]
        test_fit = "center-crop" if fit == "random-crop" else fit
        return (
            ImageFiles(train_files, shape, fit),
            ImageFiles(test_files, shape, test_fit),
            shape,
        )
    raise DatasetError(f"unknown data set {dataset!r}: use fashion-mnist, mnist or folder:PATH")
