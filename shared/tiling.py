"""Cutting an image into overlapping tiles and stitching the upscaled tiles back.

Each tile is a ``tile`` x ``tile`` core inside a window of ``tile + 2 * overlap`` pixels
(the image's size where it is smaller). Windows never leave the image: at its edges they
slide inward, so every window of an image has the same shape (windows batch together)
and a window's border is either real context or the image's own border, where the model
pads exactly as it would for the whole image. Only the core of each output is kept. When
the overlap covers the model's receptive field, the stitched image equals the
whole-image output up to float rounding: no seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    top: int  # the core, in input pixels
    left: int
    height: int
    width: int
    window: tuple[int, int, int, int]  # (top, left, bottom, right) of what the model sees

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's window of an (H, W, ...) array."""
        top, left, bottom, right = self.window
        return image[top:bottom, left:right]

    def paste(self, output: np.ndarray, upscaled: np.ndarray, scale: int) -> None:
        """Write the core of ``upscaled`` (the model's output for ``crop``) into ``output``."""
        (out_y, out_x), (in_y, in_x) = self.core(scale)
        output[out_y, out_x] = upscaled[in_y, in_x]

    def core(self, scale: int = 1) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """((rows, columns) of the core in the whole output, (rows, columns) of the core in
        the window's output), for a model whose output is ``scale`` times its input."""
        dy, dx = (self.top - self.window[0]) * scale, (self.left - self.window[1]) * scale
        h, w = self.height * scale, self.width * scale
        top, left = self.top * scale, self.left * scale
        return (
            (slice(top, top + h), slice(left, left + w)),
            (slice(dy, dy + h), slice(dx, dx + w)),
        )


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering an image, row by row."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be positive and overlap non-negative, not {tile}, {overlap}")
    window_h, window_w = min(height, tile + 2 * overlap), min(width, tile + 2 * overlap)
    # A side that fits in one window is one tile: more would only repeat the same window.
    tile_h = height if height == window_h else tile
    tile_w = width if width == window_w else tile
    tiles = []
    for top in range(0, height, tile_h):
        for left in range(0, width, tile_w):
            h, w = min(tile_h, height - top), min(tile_w, width - left)
            y = min(max(0, top - overlap), height - window_h)
            x = min(max(0, left - overlap), width - window_w)
            tiles.append(Tile(top, left, h, w, (y, x, y + window_h, x + window_w)))
    return tiles


# The any-size codecs code big images in windows of latent positions, so memory is
# bounded whatever the size: cores of 64 latents (1024 pixels at stride 16), 4 latents
# (64 pixels) of context on each side, more than either transform reaches.
CODEC_TILE = 64
CODEC_OVERLAP = 4


def codec_tiles(latent_height: int, latent_width: int) -> list[Tile]:
    """The windows, on the latent grid, a codec's transforms run on (one up to 72x72)."""
    return plan_tiles(latent_height, latent_width, CODEC_TILE, CODEC_OVERLAP)
