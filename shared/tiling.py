"""Cutting an image into overlapping tiles and stitching the upscaled tiles back.

Each tile is a ``tile`` x ``tile`` core plus up to ``overlap`` pixels of real context on
every side (less at the image's edges). The model sees the context, but only the core of
its output is kept. When the overlap covers the model's receptive field, the stitched
image equals the whole-image output up to float rounding: no seams.
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
    context: tuple[int, int, int, int]  # (top, left, bottom, right) of the region the model sees

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's input region of an (H, W, ...) array."""
        top, left, bottom, right = self.context
        return image[top:bottom, left:right]

    def paste(self, output: np.ndarray, upscaled: np.ndarray, scale: int) -> None:
        """Write the core of ``upscaled`` (the model's output for ``crop``) into ``output``."""
        dy, dx = (self.top - self.context[0]) * scale, (self.left - self.context[1]) * scale
        h, w = self.height * scale, self.width * scale
        output[
            self.top * scale : self.top * scale + h, self.left * scale : self.left * scale + w
        ] = upscaled[dy : dy + h, dx : dx + w]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering an image, row by row."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be positive and overlap non-negative, not {tile}, {overlap}")
    tiles = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            h, w = min(tile, height - top), min(tile, width - left)
            context = (
                max(0, top - overlap),
                max(0, left - overlap),
                min(height, top + h + overlap),
                min(width, left + w + overlap),
            )
            tiles.append(Tile(top, left, h, w, context))
    return tiles
