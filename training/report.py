"""The report of a custom codec: its levels against WebP, JPEG and AVIF on the held-out
images of the folder it was trained on (the split training used: nothing in it was
trained on), with the figures a user looks at before deploying it.

    OUT/report/report.md        the table, BD-rates, size ratios at equal PSNR, the figures
    OUT/report/report.json      the same numbers, the machine and the date
    OUT/report/rd.png           bytes per image against PSNR, every codec
    OUT/report/reconstructions.png   held-out images, then each level's decoding
    OUT/report/bits.png         bits per latent position: the mean, and sample images
    OUT/report/channels.png     one image's latent, channel by channel

Sizes are whole IRs (header included) and quality is measured on what the light client
decodes; for the classical codecs, whole files decoded by Pillow.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from latentwire.shared.codec import Codec
from latentwire.shared.images import SIGNED
from latentwire.shared.wire import parse
from latentwire.training.compare import bd_rate, classical_points, plot, point, size_ratio
from latentwire.training.data import run_datasets

ANCHORS = ("WebP", "JPEG", "AVIF")
SAMPLES = 8  # images in the reconstruction grid and the per-image bit maps


def held_out_images(codec: Codec, data_dir: str | None = None) -> list[np.ndarray]:
    """The held-out images of the folder a codec was trained on, as uint8 (H, W) or
    (H, W, 3), brought to its geometry as training brought them."""
    m = codec.manifest
    cfg = {
        "dataset": m.dataset,
        "model": {"config": m.config},
        "fit": m.training.get("fit", "center-crop"),
    }
    _, test_set = run_datasets(cfg, data_dir)
    images = []
    for i in range(len(test_set)):
        pixels = SIGNED.to_pixels(test_set[i]).to(torch.uint8).numpy()
        images.append(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    return images


def codec_point(codec: Codec, images: Sequence[np.ndarray]) -> tuple[dict, list[bytes], list]:
    """(RD point, IRs, decoded images) of one codec on uint8 images."""
    irs = codec.compress(
        [np.ascontiguousarray(np.atleast_3d(i).transpose(2, 0, 1)) for i in images]
    )
    decoded = codec.decompress(irs)
    return point("latentwire", codec.id, images, [len(ir) for ir in irs], decoded), irs, decoded


def write_report(packages: Sequence[Path], out: Path, data_dir: str | None = None) -> Path:
    """Measure the codec ``packages`` (levels of one domain) and write the report in
    ``out``; returns the path of ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    codecs = sorted((Codec.load(p) for p in packages), key=lambda c: c.manifest.quality or 0)
    images = held_out_images(codecs[0], data_dir)
    ours, coded = [], []
    for codec in codecs:
        row, irs, decoded = codec_point(codec, images)
        ours.append(row)
        coded.append((codec, irs, decoded))
    rows = ours + classical_points(images)
    anchors = {a: [r for r in rows if r["codec"] == a] for a in ANCHORS}
    for row in ours:
        row["size_vs"] = {a: size_ratio(points, row) for a, points in anchors.items()}
    bd = {a: bd_rate(points, ours) for a, points in anchors.items()}
    c, h, w = codecs[0].shape
    result: dict[str, Any] = {
        "dataset": codecs[0].manifest.dataset,
        "geometry": [c, h, w],
        "held_out_images": len(images),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "rows": rows,
        "bd_rate_percent_vs": bd,
    }
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(
        rows,
        out / "rd.png",
        f"{Path(result['dataset'].removeprefix('folder:')).name}: {len(images)} held-out images",
        limits=None,
        log_rate=True,
    )
    reconstruction_grid(images, coded, out / "reconstructions.png")
    bit_maps(coded, out / "bits.png")
    channel_maps(coded[len(coded) // 2], out / "channels.png")
    path = out / "report.md"
    path.write_text(_markdown(result, ours, bd))
    return path


def reconstruction_grid(images, coded, path: Path) -> None:
    from latentwire.shared.images import grid

    rows = [images[:SAMPLES]] + [decoded[:SAMPLES] for _, _, decoded in coded]
    tiles = np.stack([np.atleast_3d(i) for row in rows for i in row])
    sheet = grid(tiles, columns=min(SAMPLES, len(images)))
    scale = max(1, 96 // max(tiles.shape[1:3]))  # small images drawn bigger, pixels kept
    sheet.resize((sheet.width * scale, sheet.height * scale), Image.Resampling.NEAREST).save(path)


def _views(codec: Codec, irs: Sequence[bytes]):
    return [codec.decoder.latent_view(parse(ir)) for ir in irs]


def bit_maps(coded, path: Path) -> None:
    """Per level: bits per latent position (summed over channels), the mean over the
    held-out images, then sample images; a colour bar in bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 + min(4, len(coded[0][1]))
    fig, axes = plt.subplots(
        len(coded), columns, figsize=(2.2 * columns, 2.0 * len(coded)), squeeze=False
    )
    for row, (codec, irs, _) in zip(axes, coded, strict=True):
        maps = [view.bits.sum(0) for view in _views(codec, irs)]
        shown = [np.mean(maps, axis=0), *maps[: columns - 1]]
        for i, (ax, values) in enumerate(zip(row, shown, strict=True)):
            im = ax.imshow(values, cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{codec.id}: mean" if i == 0 else f"image {i}", fontsize=7)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    fig.suptitle("bits per latent position", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def channel_maps(level, path: Path, count: int = 16) -> None:
    """One held-out image's latent at one level: its ``count`` costliest channels, each
    with the bits it took."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codec, irs, _ = level
    view = _views(codec, irs[:1])[0]
    spent = view.bits.reshape(len(view.bits), -1).sum(1)
    order = np.argsort(-spent)[:count]
    columns = 8
    rows = -(-len(order) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, channel in zip(axes.flat, order, strict=False):
        top = max(1, int(np.abs(view.latent[channel]).max()))
        ax.imshow(view.latent[channel], cmap="coolwarm", vmin=-top, vmax=top)  # 0 is white
        ax.set_title(f"ch {channel}: {spent[channel]:.0f} b", fontsize=7)
    fig.suptitle(f"{codec.id}: latent channels of one held-out image, costliest first", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(result: dict, ours: list[dict], bd: dict) -> str:
    c, h, w = result["geometry"]
    lines = [
        f"# Codec report: {result['dataset']}",
        "",
        f"{result['held_out_images']} held-out images of {h}x{w}x{c} (never trained on), "
        f"measured {result['date']} on {result['machine']}. Sizes are whole IRs and whole "
        "files; PSNR and SSIM on what each decoder gives back.",
        "",
        "| level | bytes | bpp | PSNR (dB) | SSIM | x WebP | x JPEG | x AVIF |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ours:
        ratios = [r["size_vs"][a] for a in ANCHORS]
        shown = " | ".join("n/a" if v is None else f"{v:.2f}" for v in ratios)
        lines.append(
            f"| {r['setting']} | {r['bytes']:.1f} | {r['bpp']:.3f} | {r['psnr_db']:.2f} | "
            f"{r.get('ssim', float('nan')):.4f} | {shown} |"
        )
    lines += [
        "",
        "x WebP: the level's bytes over WebP's at the same PSNR (interpolated between WebP's "
        "quality settings; n/a outside their range).",
        "",
        "BD-rate (bytes at equal PSNR, over the range both cover): "
        + ", ".join(f"{a} {'n/a' if v is None else f'{v:+.1f}%'}" for a, v in bd.items()),
        "",
        "![rate-distortion](rd.png)",
        "",
        "![reconstructions: originals, then each level](reconstructions.png)",
        "",
        "![bits per latent position](bits.png)",
        "",
        "![latent channels](channels.png)",
        "",
    ]
    return "\n".join(lines)
