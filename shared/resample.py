"""Bicubic resampling as the super-resolution literature does it (Pillow, antialiased).

Pillow's bicubic filter widens its kernel by the reduction factor when shrinking, so a
downscale is antialiased like MATLAB's ``imresize``, the reference every published SR
figure uses.
"""

from __future__ import annotations

from PIL import Image


def modcrop(image: Image.Image, scale: int) -> Image.Image:
    """Crop the right and bottom edges so both sides are multiples of ``scale``."""
    w, h = image.size
    return image.crop((0, 0, w - w % scale, h - h % scale))


def downscale(image: Image.Image, scale: int = 2) -> Image.Image:
    """The low-resolution half of an LR/HR pair: ``modcrop`` then bicubic to 1/scale."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, not {scale}")
    image = modcrop(image, scale)
    w, h = image.size
    if w < scale or h < scale:
        raise ValueError(f"a {w}x{h} image is too small to downscale by {scale}")
    return image.resize((w // scale, h // scale), Image.Resampling.BICUBIC)


def bicubic_upscale(image: Image.Image, scale: int = 2) -> Image.Image:
    w, h = image.size
    return image.resize((w * scale, h * scale), Image.Resampling.BICUBIC)
