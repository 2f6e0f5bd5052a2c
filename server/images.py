"""Reading uploaded images without trusting them."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from latentwire.server.errors import ApiError
from latentwire.shared.pixels import UnsupportedImage, standard_image

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

# Our own pixel limit (checked from the header) decides; Pillow's bomb error stays as a
# second fence. Set once here: catch_warnings() per image would cost every request and is
# not safe across the threads that open images for /upscale.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """A decoded image in a standard mode (see :func:`standard_image`); its size is checked
    from the header before any pixel is decoded."""
    if not data:
        raise ApiError(422, "empty_image", "the request carries no image")
    try:
        # Only the accepted formats' parsers ever see the bytes.
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as e:
        raise ApiError(413, "image_too_large", f"{e}; the limit is {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(
            415, "unsupported_image", f"not an image in a supported format ({', '.join(FORMATS)})"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(
            413,
            "image_too_large",
            f"{width}x{height} is {width * height} pixels; the limit is {max_pixels}",
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(422, "corrupt_image", f"the image could not be decoded ({e})") from None
    try:
        return standard_image(image)
    except UnsupportedImage as e:
        raise ApiError(422, "unsupported_pixels", str(e)) from None


def to_model_input(image: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    """uint8 (C, H, W) in the model's geometry (height and width 0: any size), or a 422
    saying what the model accepts."""
    if height and image.size != (width, height):
        kind = "grayscale" if channels == 1 else "RGB"
        raise ApiError(
            422,
            "wrong_geometry",
            f"this model encodes {width}x{height} {kind} images; "
            f"got {image.size[0]}x{image.size[1]}",
        )
    if image.mode in ("RGBA", "LA"):
        # Transparent pixels over black, the background the data sets have.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    mode = "L" if channels == 1 else "RGB"
    pixels = np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
