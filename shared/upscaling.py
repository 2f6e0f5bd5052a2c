"""Upscaling whole images of any size and mode with a super-resolution generator (torch).

Grayscale goes through an RGB model as three equal channels and comes back as luma; an
alpha channel is upscaled on its own, the same way; images go through in fixed-size
windows (:mod:`latentwire.shared.tiling`), so memory follows the tile size, not the image.

The model always runs on chunks of exactly :func:`chunk_size` windows of one shape (the
last chunk padded), as the codec's encoder does: convolution kernels pick their algorithm
by batch size, and this way a window's pixels never depend on what it was batched with.
The server's batcher calls :func:`run_windows` with windows from many requests; the
command line calls it with one image's. Both give identical pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from latentwire.shared.images import UNIT, standard_image
from latentwire.shared.tiling import Tile, plan_tiles

DEFAULT_TILE = 128  # input pixels per tile side
DEFAULT_OVERLAP = 24  # context on each side: covers the shipped generator's receptive field
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def chunk_size(device: torch.device) -> int:
    """Windows per model call. A GPU needs many to be busy. On a CPU a window costs the same
    alone as in company (sr2x, 176x176, 2 threads: 65, 67, 72 ms a window in batches of 1, 2,
    4), so one window a call: any larger chunk only adds padding (with chunks of 4, a lone
    one-window image paid for four)."""
    return 32 if device.type == "cuda" else 1


def serving_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The dtype a generator runs in: ``auto`` is fp16 on CUDA (the shipped sr2x scores the
    same Y-PSNR on Set5 and BSD100 to three decimals as in fp32, 1.29x as fast on an H100:
    ``benchmarks/sr_precision.py``) and fp32 elsewhere. Half precision is for CUDA only: on a
    CPU it was never measured, and every CPU figure is fp32's."""
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected auto or one of {sorted(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"precision {precision} needs a CUDA device, not {device}")
    return PRECISIONS[precision]


@torch.inference_mode()
def run_windows(model: nn.Module, windows: list[np.ndarray]) -> list[np.ndarray]:
    """(h, w, C) uint8 windows -> their (s*h, s*w, C) uint8 upscales, in order; the model
    runs on its own device and in its parameters' dtype."""
    weight = next(model.parameters())
    device, dtype, chunk_len = weight.device, weight.dtype, chunk_size(weight.device)
    results: list[np.ndarray | None] = [None] * len(windows)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, window in enumerate(windows):
        by_shape.setdefault(window.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), chunk_len):
            chunk = indices[start : start + chunk_len]
            x = torch.from_numpy(np.stack([windows[i] for i in chunk]))
            if device.type == "cuda":  # page-locked: the copy runs without a staging buffer
                x = x.pin_memory()
            x = UNIT.to_model(x.to(device, non_blocking=True).permute(0, 3, 1, 2).to(dtype))
            if len(chunk) < chunk_len:
                x = torch.cat([x, x.new_zeros(chunk_len - len(chunk), *x.shape[1:])])
            # One memory layout for every chunk: padding makes a tensor contiguous, and the
            # two layouts run different kernels that round differently. Channels-last is
            # the faster one on CPU (~20% here) and what tensor cores want.
            x = x.contiguous(memory_format=torch.channels_last)
            y = UNIT.to_pixels(model(x)[: len(chunk)].float()).to(torch.uint8)
            for i, out in zip(chunk, y.permute(0, 2, 3, 1).cpu().numpy(), strict=True):
                results[i] = out
    return results  # type: ignore[return-value]


def plan(pixels: np.ndarray, tile: int | None, overlap: int) -> list[Tile]:
    """The tiles of an (H, W, C) array; ``tile=None``: one window, the whole image."""
    height, width = pixels.shape[:2]
    if tile is None:
        return plan_tiles(height, width, max(height, width), 0)
    return plan_tiles(height, width, tile, overlap)


class UpscaleJob:
    """One image's upscale, in the steps every caller takes: split it into the planes a
    model of ``channels`` upscales (L stays L, RGB stays RGB, an alpha channel or palette
    transparency is upscaled on its own; any other mode is first read as
    :func:`standard_image` reads it), cut each plane into windows, then stitch the
    upscaled windows back (:meth:`finish`). ``POST /upscale`` runs the windows through
    its batcher in steps; :func:`upscale_image` runs them here."""

    def __init__(
        self,
        image: Image.Image,
        channels: int,
        tile: int | None = DEFAULT_TILE,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        image = standard_image(image)
        self.mode, self.channels = image.mode, channels
        gray = image.mode in ("L", "LA")
        self.base_mode = "L" if gray else "RGB"
        self.planes = [self._model_input(image.convert(self.base_mode))]
        if image.mode in ("LA", "RGBA"):
            self.planes.append(self._model_input(image.getchannel("A")))
        self.plans = [plan(plane, tile, overlap) for plane in self.planes]
        self.windows = [
            np.ascontiguousarray(t.crop(plane))
            for plane, tiles in zip(self.planes, self.plans, strict=True)
            for t in tiles
        ]

    def _model_input(self, plane: Image.Image) -> np.ndarray:
        pixels = np.asarray(plane.convert("RGB" if self.channels == 3 else "L"))
        return pixels[..., None] if pixels.ndim == 2 else pixels

    def _as_plane(self, pixels: np.ndarray, mode: str) -> Image.Image:
        model_mode = "RGB" if self.channels == 3 else "L"
        upscaled = Image.fromarray(pixels[..., 0] if self.channels == 1 else pixels, model_mode)
        return upscaled.convert(mode)

    def finish(self, outputs: list[np.ndarray], scale: int) -> Image.Image:
        """The upscaled image from the upscaled windows (in the order of :attr:`windows`)."""
        stitched, start = [], 0
        for plane, tiles in zip(self.planes, self.plans, strict=True):
            stitched.append(stitch(tiles, outputs[start : start + len(tiles)], plane.shape, scale))
            start += len(tiles)
        base = self._as_plane(stitched[0], self.base_mode)
        if len(stitched) == 1:
            return base
        return Image.merge(self.mode, (*base.split(), self._as_plane(stitched[1], "L")))


def stitch(tiles: list[Tile], outputs: list[np.ndarray], shape: tuple, scale: int) -> np.ndarray:
    height, width, channels = shape
    out = np.empty((height * scale, width * scale, channels), dtype=np.uint8)
    for t, upscaled in zip(tiles, outputs, strict=True):
        t.paste(out, upscaled, scale)
    return out


def upscale_image(
    model: nn.Module,
    image: Image.Image,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> Image.Image:
    """Upscale a PIL image of any mode, here (see :class:`UpscaleJob`)."""
    job = UpscaleJob(image, model.config.channels, tile, overlap)
    return job.finish(run_windows(model, job.windows), model.config.scale)
