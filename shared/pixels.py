"""One reading of an image's pixels for every model: the mode family a model can take.

Pillow opens images in dozens of modes; converting them naively loses data (a 16-bit PNG
becomes all white through ``convert("L")``, a phone photo comes out on its side). Every
route and command that feeds a model goes through :func:`standard_image` first.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import ExifTags, Image, ImageOps

STANDARD_MODES = ("L", "LA", "RGB", "RGBA")


class UnsupportedImage(ValueError):
    """An image whose pixels a model cannot take without losing or inventing something."""


def standard_image(image: Image.Image) -> Image.Image:
    """``image`` (loaded) as L, LA, RGB or RGBA, upright as a viewer shows it.

    16-bit samples are rounded to 8 bits, CMYK/YCbCr/LAB/HSV become RGB, a palette with
    transparency becomes RGBA, 1-bit becomes L, and the EXIF orientation is applied.
    Animated and floating-point images raise :class:`UnsupportedImage`. An image already
    standard and upright comes back as it is, so calling this twice costs nothing.
    """
    if getattr(image, "n_frames", 1) > 1:
        raise UnsupportedImage(
            f"animated images are not supported ({image.n_frames} frames); send one frame"
        )
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("F", "I;16F"):
        raise UnsupportedImage("floating-point images are not supported; send 8 or 16 bits")
    if image.mode.startswith("I"):  # I;16, I;16B, I;16L (16-bit PNG/TIFF) and I (32-bit)
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        image = Image.fromarray(((wide + 128) // 257).astype(np.uint8), "L")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        transparent = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    elif image.mode in ("L", "RGB") and "transparency" in image.info:  # a tRNS colour key
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    elif image.mode == "La":
        image = image.convert("LA")
    elif image.mode == "RGBa":
        image = image.convert("RGBA")
    elif image.mode not in STANDARD_MODES:  # CMYK, YCbCr, LAB, HSV, RGBX
        image = image.convert("RGB")
    return image


def grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> Image.Image:
    """uint8 images (N, H, W, C) side by side, ``columns`` a row (default: a square),
    with a ``gap``-pixel gray border; L for one channel, RGB for three."""
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, c), 128, np.uint8)
    for i, image in enumerate(images):
        top, left = gap + (i // columns) * (h + gap), gap + (i % columns) * (w + gap)
        canvas[top : top + h, left : left + w] = image
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas, "L" if c == 1 else "RGB")
