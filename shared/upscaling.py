"""Upscaling whole images of any size and mode with a super-resolution generator (torch).

Grayscale goes through an RGB model as three equal channels and comes back as luma;
an alpha channel is upscaled on its own, the same way; large images go through in tiles
(:mod:`latentwire.shared.tiling`), so memory follows the tile size, not the image size.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from latentwire.shared.tiling import plan_tiles

DEFAULT_TILE = 128  # input pixels per tile side
DEFAULT_OVERLAP = 24  # enough context for the shipped generator's receptive field


@torch.inference_mode()
def upscale_array(
    model: nn.Module,
    pixels: np.ndarray,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> np.ndarray:
    """(H, W, C) uint8 with C = the model's channels -> (s*H, s*W, C) uint8.

    ``tile=None`` runs the whole image in one call.
    """
    scale = model.config.scale
    device = next(model.parameters()).device
    height, width, channels = pixels.shape
    out = np.empty((height * scale, width * scale, channels), dtype=np.uint8)
    tiles = plan_tiles(height, width, tile or max(height, width), overlap if tile else 0)
    for t in tiles:
        x = torch.from_numpy(np.array(t.crop(pixels))).to(device)  # a copy: writable
        x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        y = model(x)[0].clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
        t.paste(out, y.permute(1, 2, 0).cpu().numpy(), scale)
    return out


def upscale_image(
    model: nn.Module,
    image: Image.Image,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> Image.Image:
    """Upscale a PIL image, keeping its mode family: L stays L, RGBA keeps its alpha."""
    channels = model.config.channels

    def run(plane: Image.Image) -> Image.Image:
        """An L or RGB image through the model, back in the same mode."""
        want = "RGB" if channels == 3 else "L"
        pixels = np.asarray(plane.convert(want))
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        result = upscale_array(model, pixels, tile, overlap)
        result = Image.fromarray(result[..., 0] if channels == 1 else result, want)
        return result.convert(plane.mode)

    if image.mode in ("L", "RGB"):
        return run(image)
    if image.mode in ("LA", "RGBA", "PA", "P") and _has_alpha(image):
        rgba = image.convert("LA" if image.mode == "LA" else "RGBA")
        *colour, alpha = rgba.split()
        base = run(Image.merge("L" if len(colour) == 1 else "RGB", colour))
        return Image.merge(rgba.mode, (*base.split(), run(alpha)))
    # I;16, CMYK, palette without transparency, ...: as RGB (or L for one-band modes).
    return run(image.convert("L" if len(image.getbands()) == 1 else "RGB"))


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("LA", "RGBA", "PA") or "transparency" in image.info
