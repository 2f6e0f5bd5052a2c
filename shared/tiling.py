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
        dy, dx = (self.top - self.window[0]) * scale, (self.left - self.window[1]) * scale
        h, w = self.height * scale, self.width * scale
        output[
            self.top * scale : self.top * scale + h, self.left * scale : self.left * scale + w
        ] = upscaled[dy : dy + h, dx : dx + w]


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
