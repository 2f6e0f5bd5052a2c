"""Data sets: Fashion-MNIST, MNIST (through torchvision's classes) and any folder of images.

Every data set yields float tensors of shape (C, H, W) in the pixel range of the model
it feeds (:mod:`latentwire.shared.images`: [-1, 1] for codecs and autoencoders, [0, 1] for
generators and classifiers), and holds out a test set by :func:`held_out`.

Offline, the MNIST-family loaders read the original IDX files (gzipped or not) from a data
folder: ``--data-dir``, else ``$LATENTWIRE_DATA``, else ``../shared/data`` beside a checkout.
torchvision expects them uncompressed under ``<root>/<Class>/raw``, so they are unpacked
once into a cache folder.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from latentwire.shared.images import SIGNED, PixelRange
from latentwire.shared.models import ImageShape
from latentwire.training.loop import LoopConfig

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

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_range: PixelRange = SIGNED,
    ) -> None:
        self.images, self.labels, self.pixel_range = images, labels, pixel_range

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.pixel_range.to_model(self.images[index].float())

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        # DataLoader's batched fetch: one indexing op per batch instead of one per image.
        return list(self.pixel_range.to_model(self.images[indices].float()))


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
    name: str,
    train: bool,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    pixel_range: PixelRange = SIGNED,
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
    return TensorImages(ds.data.unsqueeze(1).contiguous(), ds.targets.clone(), pixel_range)


class ImageFiles(Dataset):
    """Every image file under a folder (recursively), brought to one geometry.

    ``fit``: ``resize`` squashes to H x W; ``center-crop`` resizes the short side and crops
    the centre; ``random-crop`` takes a random H x W window (images smaller are resized up).
    """

    FITS = ("resize", "center-crop", "random-crop")

    def __init__(
        self,
        files: list[Path],
        shape: ImageShape,
        fit: str = "center-crop",
        pixel_range: PixelRange = SIGNED,
    ) -> None:
        if fit not in self.FITS:
            raise ValueError(f"fit must be one of {self.FITS}, not {fit!r}")
        self.files, self.shape, self.pixel_range = files, shape, pixel_range
        self.labels = None
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
        return self.pixel_range.to_model(pixels.float())


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


def held_out(path: Path, fraction: float) -> bool:
    """Whether a file belongs to the held-out (test) part of its data set: decided by a hash
    of its name alone, so the split never changes as files are added, moved or resumed."""
    return int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def split_files(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, held out) by :func:`held_out`. Never an empty held-out part: when the hash
    puts no file there, the last training file moves there (so nothing held out is
    trained on); a single file is both (nothing else can be done with one)."""
    train = [f for f in files if not held_out(f, fraction)]
    test = [f for f in files if held_out(f, fraction)]
    if not test:
        test = train[-1:]
        train = train[:-1] or train
    return train, test


def load_datasets(
    dataset: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    shape: ImageShape | None = None,
    fit: str = "center-crop",
    test_fraction: float = 0.1,
    pixel_range: PixelRange = SIGNED,
) -> tuple[Dataset, Dataset, ImageShape]:
    """(train, test, image shape) for ``fashion-mnist``, ``mnist`` or ``folder:PATH``; a
    folder is split by :func:`held_out`."""
    if dataset in _IDX_DATASETS:
        train = load_idx_dataset(dataset, True, data_dir, download, pixel_range)
        test = load_idx_dataset(dataset, False, data_dir, download, pixel_range)
        return train, test, ImageShape(1, 28, 28)
    if dataset.startswith("folder:"):
        if shape is None:
            raise ValueError("a folder data set needs --channels, --height and --width")
        files = image_files(dataset.removeprefix("folder:"))
        train_files, test_files = split_files(files, test_fraction)
        test_fit = "center-crop" if fit == "random-crop" else fit
        return (
            ImageFiles(train_files, shape, fit, pixel_range),
            ImageFiles(test_files, shape, test_fit, pixel_range),
            shape,
        )
    raise DatasetError(f"unknown data set {dataset!r}: use fashion-mnist, mnist or folder:PATH")


@dataclass
class ImageDataConfig(LoopConfig):
    """The data options of the recipes that train on a data set of images."""

    dataset: str = "fashion-mnist"  # fashion-mnist, mnist or folder:PATH
    data_dir: str | None = None
    download: bool = False
    # folder data sets only: the geometry images are brought to
    channels: int = 1
    height: int = 28
    width: int = 28
    fit: str = "center-crop"


def load_image_data(
    cfg: ImageDataConfig, pixel_range: PixelRange = SIGNED
) -> tuple[Dataset, Dataset, ImageShape]:
    """A recipe's (train, test, shape), cut to ``--limit`` when asked."""
    train_set, test_set, shape = load_datasets(
        cfg.dataset,
        data_dir=cfg.data_dir,
        download=cfg.download,
        shape=ImageShape(cfg.channels, cfg.height, cfg.width),
        fit=cfg.fit,
        pixel_range=pixel_range,
    )
    if cfg.limit:
        train_set = Subset(train_set, range(min(cfg.limit, len(train_set))))
        test_set = Subset(test_set, range(min(cfg.limit, len(test_set))))
    return train_set, test_set, shape


def run_datasets(
    cfg: dict[str, Any], data_dir: str | None = None, pixel_range: PixelRange = SIGNED
) -> tuple[Dataset, Dataset]:
    """(train, test) of the data set a run trained on, as the run saw it (from the config
    its checkpoints hold)."""
    shape = ImageShape(**cfg["model"]["config"]["shape"])
    train_set, test_set, _ = load_datasets(
        cfg["dataset"],
        data_dir=data_dir or cfg.get("data_dir"),
        shape=shape,
        fit=cfg.get("fit", "center-crop"),
        pixel_range=pixel_range,
    )
    return train_set, test_set


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None, help="folder with the data sets (default: $LATENTWIRE_DATA)"
    )
    parser.add_argument(
        "--download", action="store_true", help="download with torchvision if not found locally"
    )


def add_image_arguments(parser: argparse.ArgumentParser, d: ImageDataConfig) -> None:
    parser.add_argument("--dataset", default=d.dataset, help="fashion-mnist, mnist or folder:PATH")
    add_data_arguments(parser)
    parser.add_argument("--channels", type=int, choices=[1, 3], default=d.channels)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--fit", choices=ImageFiles.FITS, default=d.fit)


def labels_of(images: Dataset) -> torch.Tensor | None:
    """The class labels of a data set (or of a Subset of one); None where it has none."""
    if isinstance(images, Subset):
        labels = labels_of(images.dataset)
        return None if labels is None else labels[list(images.indices)]
    return getattr(images, "labels", None)


class LabelledImages(Dataset):
    """(image, label) pairs of a data set; label -1 where it has no classes."""

    def __init__(self, images: Dataset) -> None:
        self.images = images
        self.labels = labels_of(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.labels[index]) if self.labels is not None else -1
        return self.images[index], label


def random_hflip(images: torch.Tensor) -> torch.Tensor:
    """Each image of a batch mirrored left-right with probability 1/2 (clothes, faces)."""
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
