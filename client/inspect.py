"""``latentwire inspect``: one image through a codec, and where its bits went.

The figure (PNG, Pillow only: no torch, no matplotlib) has, left to right: the original
(when there is one), the reconstruction the light client decodes, the error map
(|original - reconstruction|, brightest = 64 levels or more), the bits per latent
position (each latent cell drawn over the image area it codes), and the latent's
costliest channels, each labelled with its bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from latentwire.shared.decoding import LatentView

# A perceptual dark-to-bright ramp (after matplotlib's magma) for the heat maps.
_RAMP = np.array(
    [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
     (250, 193, 39), (252, 255, 164)],
    dtype=np.float64,
)  # fmt: skip
PANEL = 192  # pixels a panel's longer side is drawn at (at least)
CHANNELS = 8  # latent channels shown
LABEL = 14  # pixels of the label strip above each panel


def heat(values: np.ndarray, top: float | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 colours, 0 dark, ``top`` (default: the maximum)
    bright."""
    top = float(values.max()) if top is None else top
    scaled = np.clip(values / top if top > 0 else values * 0, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(scaled).astype(int).clip(0, len(_RAMP) - 2)
    t = (scaled - low)[..., None]
    return ((1 - t) * _RAMP[low] + t * _RAMP[low + 1]).round().astype(np.uint8)


def _diverging(values: np.ndarray) -> np.ndarray:
    """A latent channel: blue below zero, white at zero, red above."""
    top = max(float(np.abs(values).max()), 1.0)
    v = (values / top)[..., None]
    blue, white, red = np.array([59, 76, 192]), np.array([255, 255, 255]), np.array([180, 4, 38])
    out = np.where(v < 0, white + (blue - white) * -v, white + (red - white) * v)
    return out.round().astype(np.uint8)


def _panel(pixels: np.ndarray, label: str, side: int) -> Image.Image:
    """A labelled panel: ``pixels`` (H, W) or (H, W, 3) uint8 scaled, nearest, to ``side``."""
    image = Image.fromarray(pixels).convert("RGB")
    scale = max(1, side // max(image.size))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    panel = Image.new("RGB", (image.width, image.height + LABEL), "white")
    panel.paste(image, (0, LABEL))
    ImageDraw.Draw(panel).text((2, 1), label, fill="black")
    return panel


@dataclass(frozen=True)
class Inspection:
    """The numbers the figure shows, for one IR."""

    ir_bytes: int
    bits_per_pixel: float
    latent_bits: float
    side_bits: float
    psnr_db: float | None  # None without an original


def figure(
    decoded: np.ndarray,
    view: LatentView,
    stride: int,
    ir_bytes: int,
    original: np.ndarray | None = None,
) -> tuple[Image.Image, Inspection]:
    """The inspection figure of one decoded IR (its latent coding ``stride`` x ``stride``
    pixels a position), and its numbers."""
    height, width = decoded.shape[:2]
    side = max(PANEL, max(height, width))
    panels = []
    psnr_db = None
    if original is not None:
        error = np.abs(original.astype(np.int16) - decoded.astype(np.int16))
        error = error.max(-1) if error.ndim == 3 else error
        mse = float(np.mean((original.astype(np.float64) - decoded) ** 2))
        psnr_db = 10 * np.log10(255**2 / max(mse, 1e-10))
        panels.append(_panel(original, "original", side))
    panels.append(_panel(decoded, f"decoded, {ir_bytes} B", side))
    if original is not None:
        panels.append(_panel(heat(error.astype(np.float64), 64), f"error, {psnr_db:.2f} dB", side))
    position_bits = view.bits.sum(0)
    cell = position_bits.repeat(stride, 0).repeat(stride, 1)
    panels.append(
        _panel(heat(cell[:height, :width]), f"bits/position, max {position_bits.max():.0f}", side)
    )
    spent = view.bits.reshape(len(view.bits), -1).sum(1)
    for channel in np.argsort(-spent)[:CHANNELS]:
        panels.append(
            _panel(
                _diverging(view.latent[channel]), f"ch {channel}: {spent[channel]:.0f} b", side // 2
            )
        )
    sheet = Image.new(
        "RGB",
        (sum(p.width for p in panels) + 4 * len(panels), max(p.height for p in panels)),
        "white",
    )
    left = 0
    for p in panels:
        sheet.paste(p, (left, 0))
        left += p.width + 4
    latent_bits = float(view.bits.sum())
    numbers = Inspection(
        ir_bytes, ir_bytes * 8 / (height * width), latent_bits, view.side_bits, psnr_db
    )
    return sheet, numbers
