"""Training data cut from photo folders: random patches (photo codecs), LR/HR pairs
(super-resolution), fixed centre crops (validation)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from latentwire.shared.images import UNIT, PixelRange
from latentwire.shared.resample import downscale, modcrop
from latentwire.training.data import DatasetError, default_data_dirs, image_files, split_files

log = logging.getLogger("latentwire.train")

# The photo sets in ../shared/data that may be trained on (never set5, bsd100, kodak).
TRAIN_SETS = "bsds500_train,t91,skimage_cc0"


def find_folders(spec: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Comma-separated folders: paths, or names of data sets under the data directory."""
    bases = [Path(data_dir)] if data_dir else default_data_dirs()
    folders = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        candidates = [Path(name)] + [base / name for base in bases]
        found = next((c for c in candidates if c.is_dir()), None)
        if found is None:
            where = ", ".join(str(c) for c in candidates)
            raise DatasetError(f"image folder {name!r} not found (looked in {where})")
        folders.append(found)
    return folders


def photo_split(spec: str, data_dir: str | os.PathLike | None, fraction: float):
    """(train, held out) photo files of the folders ``spec`` names (see ``split_files``)."""
    return split_files([f for d in find_folders(spec, data_dir) for f in image_files(d)], fraction)


def _to_tensor(pixels: np.ndarray, pixel_range: PixelRange = UNIT) -> torch.Tensor:
    """(H, W, C) or (H, W) pixels -> (C, H, W) in ``pixel_range``."""
    # np.array copies: patches are often read-only views (rot90, flips) of the cached photos.
    pixels = np.array(pixels)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    return pixel_range.to_model(torch.from_numpy(pixels).permute(2, 0, 1).float())


class RandomPatches(Dataset):
    """``length`` random ``patch``-pixel squares a epoch, cut from photos (``mode`` RGB
    or L, in ``pixel_range``).

    Augmentation: horizontal and vertical flips, rotation by 0/90/180/270. Each item is
    drawn from a generator seeded by (seed, epoch, index): resumed and distributed runs
    see exactly the patches an uninterrupted single-process run would. Photos smaller than
    the patch are skipped (and counted in the log). Patch corners fall on multiples of
    ``align``.
    """

    def __init__(
        self,
        files: list[Path],
        patch: int,
        length: int,
        seed: int = 0,
        augment: bool = True,
        align: int = 1,
        pixel_range: PixelRange = UNIT,
        mode: str = "RGB",
    ) -> None:
        self.patch, self.length, self.align = patch, length, align
        self.pixel_range = pixel_range
        self.seed, self.epoch, self.augment = seed, 0, augment
        self.files: list[Path] = []
        self.photos: list[np.ndarray] = []
        self.skipped = 0
        for path in files:
            with Image.open(path) as image:
                photo = modcrop(image.convert(mode), align)
            if min(photo.size) < patch:
                self.skipped += 1
                continue
            self.files.append(path)
            self.photos.append(np.asarray(photo))
        if not self.photos:
            raise DatasetError(f"none of the {len(files)} images is at least {patch}x{patch}")
        if self.skipped:
            log.info("skipped %d images smaller than the %d-pixel patch", self.skipped, patch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[np.random.Generator, int, int, int]:
        """(the item's generator, photo index, top, left) of item ``index`` this epoch."""
        g = np.random.default_rng([self.seed, self.epoch, index])
        which = int(g.integers(len(self.photos)))
        height, width = self.photos[which].shape[:2]
        a, p = self.align, self.patch
        top = int(g.integers((height - p) // a + 1)) * a
        left = int(g.integers((width - p) // a + 1)) * a
        return g, which, top, left

    def augmented(self, g: np.random.Generator, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The same random rotation and flips applied to every array."""
        if not self.augment:
            return arrays
        k, flip_h, flip_v = int(g.integers(4)), g.integers(2), g.integers(2)
        out = []
        for a in arrays:
            a = np.rot90(a, k)
            a = a[:, ::-1] if flip_h else a
            out.append(a[::-1] if flip_v else a)
        return out

    def __getitem__(self, index: int) -> torch.Tensor:
        g, which, top, left = self.window(index)
        p = self.patch
        (patch,) = self.augmented(g, [self.photos[which][top : top + p, left : left + p]])
        return _to_tensor(patch, self.pixel_range)


class PatchPairs(RandomPatches):
    """Random (LR, HR) pairs: HR patches of ``patch`` pixels (see :class:`RandomPatches`),
    LR 1/scale: the antialiased bicubic downscale of the HR patch, or, with ``lr_dir``, the
    matching crop of the same-named file there (made by ``latentwire downscale``)."""

    def __init__(
        self,
        files: list[Path],
        patch: int,
        scale: int,
        length: int,
        seed: int = 0,
        lr_dir: str | os.PathLike | None = None,
        augment: bool = True,
    ) -> None:
        if patch % scale:
            raise ValueError(f"patch size {patch} must be a multiple of the scale {scale}")
        super().__init__(files, patch, length, seed, augment, align=scale)
        self.scale = scale
        self.low: list[np.ndarray | None] = [None] * len(self.photos)
        if lr_dir is not None:
            self.low = [
                _read_lr(Path(lr_dir) / path.name, photo.shape[1::-1], scale)
                for path, photo in zip(self.files, self.photos, strict=True)
            ]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g, which, top, left = self.window(index)
        s, p = self.scale, self.patch
        hr_patch = self.photos[which][top : top + p, left : left + p]
        lr = self.low[which]
        if lr is None:
            lr_patch = np.asarray(downscale(Image.fromarray(hr_patch), s))
        else:
            lr_patch = lr[top // s : (top + p) // s, left // s : (left + p) // s]
        lr_patch, hr_patch = self.augmented(g, [lr_patch, hr_patch])
        return _to_tensor(lr_patch), _to_tensor(hr_patch)


def _read_lr(path: Path, hr_size: tuple[int, int], scale: int) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"no low-resolution file {path} for the high-resolution image")
    with Image.open(path) as image:
        lr = image.convert("RGB")
    want = (hr_size[0] // scale, hr_size[1] // scale)
    if lr.size != want:
        raise DatasetError(f"{path} is {lr.size[0]}x{lr.size[1]}; expected {want[0]}x{want[1]}")
    return np.asarray(lr)


class CenterPairs(Dataset):
    """One fixed (LR, HR) pair per image: the centre ``patch`` square (validation)."""

    def __init__(self, files: list[Path], patch: int, scale: int) -> None:
        self.pairs = []
        for path in files:
            with Image.open(path) as image:
                hr = image.convert("RGB")
            w, h = hr.size
            side = min(patch, w - w % scale, h - h % scale)
            side -= side % scale
            left, top = (w - side) // 2, (h - side) // 2
            hr = hr.crop((left, top, left + side, top + side))
            self.pairs.append((_to_tensor(np.asarray(downscale(hr, scale))), _to_tensor(hr)))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pairs[index]
