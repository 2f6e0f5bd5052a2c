"""Image conventions, in one place: reading untrusted image bytes, the one mode family every
model takes, the pixel range a model computes in, and grids of images.

Pillow opens images in dozens of modes; converting them naively loses data (a 16-bit PNG
becomes all white through ``convert("L")``, a phone photo comes out on its side). Every
route and command that feeds a model goes through :func:`open_image` or
:func:`standard_image` first. No torch: the light client uses this module too.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")  # what open_image reads
STANDARD_MODES = ("L", "LA", "RGB", "RGBA")

# Our own pixel limit (checked from the header) decides; Pillow's bomb error stays as a
# second fence. Set once here: catch_warnings() per image would cost every request and is
# not safe across the threads that open images for /upscale.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An image that cannot be used as it is; ``code`` is stable and machine-readable (the
    server answers each with its own status)."""

    code = "unsupported_image"


class EmptyImage(ImageError):
    code = "empty_image"


class ImageTooLarge(ImageError):
    code = "image_too_large"


class UnsupportedImage(ImageError):
    code = "unsupported_image"


class CorruptImage(ImageError):
    code = "corrupt_image"


class UnsupportedPixels(ImageError):
    """Pixels a model cannot take without losing or inventing something."""

    code = "unsupported_pixels"


class WrongGeometry(ImageError):
    code = "wrong_geometry"


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Untrusted bytes as a decoded image in a standard mode (:func:`standard_image`). The
    size is checked from the header before any pixel is decoded (decompression bombs never
    decode), and only the parsers of :data:`FORMATS` ever see the bytes."""
    if not data:
        raise EmptyImage("the request carries no image")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{e}; the limit is {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UnsupportedImage(
            f"not an image in a supported format ({', '.join(FORMATS)})"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height} pixels; the limit is {max_pixels}"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise CorruptImage(f"the image could not be decoded ({e})") from None
    return standard_image(image)


def standard_image(image: Image.Image) -> Image.Image:
    """``image`` (loaded) as L, LA, RGB or RGBA, upright as a viewer shows it.

    16-bit samples are rounded to 8 bits, CMYK/YCbCr/LAB/HSV become RGB, a palette with
    transparency becomes RGBA, 1-bit becomes L, and the EXIF orientation is applied.
    Animated and floating-point images raise :class:`UnsupportedPixels`. An image already
    standard and upright comes back as it is, so calling this twice costs nothing.
    """
    if getattr(image, "n_frames", 1) > 1:
        raise UnsupportedPixels(
            f"animated images are not supported ({image.n_frames} frames); send one frame"
        )
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("F", "I;16F"):
        raise UnsupportedPixels("floating-point images are not supported; send 8 or 16 bits")
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


def model_input(image: Image.Image, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 (C, H, W) for a model of ``shape`` (C, H, W; H and W 0: any size), or a
    :class:`WrongGeometry` that says what the model takes. Transparent pixels are laid
    over black, the background the data sets have."""
    channels, height, width = shape
    if height and image.size != (width, height):
        kind = "grayscale" if channels == 1 else "RGB"
        raise WrongGeometry(
            f"this model encodes {width}x{height} {kind} images; "
            f"got {image.size[0]}x{image.size[1]}"
        )
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    mode = "L" if channels == 1 else "RGB"
    pixels = np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


Pixels = TypeVar("Pixels")  # a float numpy array or a torch tensor


@dataclass(frozen=True)
class PixelRange:
    """The values a model computes in, for pixels 0..255; each manifest names its range.
    The arithmetic works on numpy arrays and torch tensors alike, always in the same order,
    so every caller gets the same bits."""

    low: float
    high: float

    @property
    def scale(self) -> float:
        return 255 / (self.high - self.low)

    def to_model(self, pixels: Pixels) -> Pixels:
        """Float pixels 0..255 -> the model's range."""
        return pixels / self.scale + self.low

    def to_model_(self, x: Any) -> Any:
        """:meth:`to_model` in place, for a float torch tensor the caller owns (a big
        image then needs no second copy)."""
        return x.div_(self.scale).add_(self.low)

    def to_pixels(self, x: Pixels) -> Pixels:
        """The model's output -> pixel values 0..255, clipped and rounded (still float)."""
        return ((x.clip(self.low, self.high) - self.low) * self.scale).round()

    def to_json(self) -> list[float]:
        return [self.low, self.high]

    @classmethod
    def from_json(cls, value: Any) -> PixelRange:
        low, high = (float(v) for v in value)
        if (low, high) not in ((-1.0, 1.0), (0.0, 1.0)):
            raise ValueError(f"pixel range {value!r}: expected [-1, 1] or [0, 1]")
        return cls(low, high)


SIGNED = PixelRange(-1.0, 1.0)  # codecs and autoencoders
UNIT = PixelRange(0.0, 1.0)  # GAN and DCGAN, super-resolution, the classifiers


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
