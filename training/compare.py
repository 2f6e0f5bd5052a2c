"""latentwire against the classical codecs on the same images: JPEG, WebP and AVIF through
Pillow at a sweep of their quality settings, Bjøntegaard delta rates, the size ratio at
equal PSNR, and the RD plot. The benchmarks and the custom-codec report measure with it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from latentwire.training.metrics import psnr, psnr_y, ssim_per_image

# Quality settings swept for each classical codec: from its smallest file to near lossless.
CLASSICAL = {
    "JPEG": [5, 10, 20, 30, 40, 50, 60, 75, 85, 95],
    "WebP": [0, 5, 10, 20, 30, 40, 50, 60, 75, 90, 100],
    "AVIF": [0, 10, 25, 40, 55, 70, 85, 95],
}
FORMATS = {"JPEG": "JPEG", "WebP": "WEBP", "AVIF": "AVIF"}


def _ssim(originals: Sequence[np.ndarray], decoded: Sequence[np.ndarray]) -> float:
    """Mean SSIM of uint8 images (H, W) or (H, W, 3) of one geometry."""
    a, b = (
        torch.from_numpy(np.stack([np.atleast_3d(i) for i in images])).permute(0, 3, 1, 2)
        for images in (originals, decoded)
    )
    return float(ssim_per_image(a.float() / 255, b.float() / 255).mean())


def point(
    codec: str,
    setting: str,
    originals: Sequence[np.ndarray],
    sizes: Sequence[int],
    decoded: Sequence[np.ndarray],
    times: tuple[Sequence[float], Sequence[float]] | None = None,
) -> dict[str, Any]:
    """One RD point over a set of uint8 images (H, W) or (H, W, 3): mean bytes, bits per
    pixel, PSNR, PSNR on BT.601 luma (a gray image's own), SSIM when the images share one
    geometry, and with ``times`` (seconds to encode, to decode, per image) the mean ms."""
    pixels = [o.shape[0] * o.shape[1] for o in originals]
    pairs = list(zip(originals, decoded, strict=True))
    row = {
        "codec": codec,
        "setting": setting,
        "bytes": float(np.mean(sizes)),
        "bpp": float(np.mean([s * 8 / p for s, p in zip(sizes, pixels, strict=True)])),
        "psnr_db": float(np.mean([psnr(o, d) for o, d in pairs])),
        "psnr_y_db": float(np.mean([psnr_y(o, d) for o, d in pairs])),
    }
    if len({o.shape for o in originals}) == 1:
        row["ssim"] = _ssim(originals, decoded)
    if times is not None:
        row["encode_ms"], row["decode_ms"] = (float(np.mean(t) * 1000) for t in times)
    return row


Measure = Callable[..., dict[str, Any]]  # point's signature: (codec, setting, originals, ...)


def classical_points(
    images: Sequence[np.ndarray],
    codecs: dict[str, list[int]] = CLASSICAL,
    measure: Measure = point,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Every classical codec at every setting of ``codecs`` on uint8 images (H, W) or
    (H, W, 3), each coded on its own and timed; sizes are whole files. ``measure`` makes
    each row from (codec, setting, images, sizes, decoded, times), as :func:`point` does."""
    rows = []
    Image.init()
    for name, qualities in codecs.items():
        if FORMATS[name] not in Image.SAVE:  # a Pillow built without it (AVIF is recent)
            continue
        for q in tqdm(qualities, desc=name, leave=False, disable=not progress):
            sizes, decoded, encode_s, decode_s = [], [], [], []
            for image in images:
                began = time.perf_counter()
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, FORMATS[name], quality=q)
                encode_s.append(time.perf_counter() - began)
                sizes.append(buffer.tell())
                buffer.seek(0)
                began = time.perf_counter()
                mode = "L" if image.ndim == 2 else "RGB"
                decoded.append(np.asarray(Image.open(buffer).convert(mode)))
                decode_s.append(time.perf_counter() - began)
            rows.append(measure(name, f"q{q}", images, sizes, decoded, (encode_s, decode_s)))
    return rows


def bd_rate(
    anchor: list[dict],
    test: list[dict],
    rate: str = "bytes",
    quality: str = "psnr_db",
    within: tuple[float, float] | None = None,
) -> float | None:
    """Bjøntegaard delta rate (%): the test codec's average bitrate change at equal PSNR,
    over the PSNR range both curves cover, or the part of it ``within`` (lo, hi) dB
    (cubic fit of log-rate against PSNR). ``rate`` and ``quality`` name the points'
    fields (the same units on both sides). None with fewer than 4 points a side."""

    def curve(points):
        pts = sorted({(p[quality], p[rate]) for p in points})
        return np.array([p[0] for p in pts]), np.log([p[1] for p in pts])

    if len(anchor) < 4 or len(test) < 4:
        return None
    pa, ra = curve(anchor)
    pt, rt = curve(test)
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if within is not None:
        lo, hi = max(lo, within[0]), min(hi, within[1])
    if hi <= lo:
        return None
    fa, ft = np.polyint(np.polyfit(pa, ra, 3)), np.polyint(np.polyfit(pt, rt, 3))
    avg_a = (np.polyval(fa, hi) - np.polyval(fa, lo)) / (hi - lo)
    avg_t = (np.polyval(ft, hi) - np.polyval(ft, lo)) / (hi - lo)
    return float((np.exp(avg_t - avg_a) - 1) * 100)


def size_ratio(anchor: list[dict], test: dict, rate: str = "bytes") -> float | None:
    """``test``'s size over the anchor codec's at the same PSNR: the anchor's points sorted
    by PSNR (sizes made non-decreasing), log-size interpolated linearly in PSNR. None
    outside the anchor's PSNR range."""
    pts = sorted((p["psnr_db"], p[rate]) for p in anchor)
    db = np.array([p[0] for p in pts])
    size = np.maximum.accumulate(np.array([p[1] for p in pts]))  # more dB never costs less
    if not db[0] <= test["psnr_db"] <= db[-1]:
        return None
    return float(test[rate] / np.exp(np.interp(test["psnr_db"], db, np.log(size))))


def plot(
    rows: list[dict],
    path: Path,
    title: str,
    *,
    rate: str = "bytes",
    rate_label: str = "bytes per image (whole message)",
    psnr_label: str = "PSNR (dB)",
    limits: tuple[tuple[float, float], tuple[float, float]] | None = ((0, 600), (18, 45)),
    extra: Callable[[Any], None] | None = None,
    log_rate: bool = False,
) -> None:
    """The RD plot of every codec in ``rows`` (``rate`` against PSNR); ``extra`` draws
    reference marks on the axes; ``limits`` None fits the axes to the points; ``log_rate``
    draws the rate on a log scale (codecs whose smallest files differ tenfold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name in ["latentwire", "JPEG", "WebP", "AVIF"]:
        pts = sorted((r[rate], r["psnr_db"]) for r in rows if r["codec"] == name)
        if pts:
            style = "o-" if name == "latentwire" else ".--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
    if extra:
        extra(ax)
    if log_rate:
        ax.set_xscale("log")
    ax.set_xlabel(rate_label)
    ax.set_ylabel(psnr_label)
    if limits:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
