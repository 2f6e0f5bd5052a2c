"""Rate-distortion of latentwire's photo codecs on Kodak against JPEG, WebP and AVIF.

Every photo is coded on its own. For latentwire the size is the whole IR message and the
quality is measured on what the light client decodes; for Pillow's codecs the file. PSNR
on RGB and on Y (BT.601), bits per pixel, encode and decode time per image. Writes a
JSON table, an RD plot with CompressAI's published bmshj2018-factorized points on Kodak
for reference, and BD-rates against each classical codec.

    python benchmarks/rate_distortion_photos.py                 # every photo codec shipped
    python benchmarks/rate_distortion_photos.py --models DIR    # packages in DIR as well
    python benchmarks/rate_distortion_photos.py --gray          # Kodak in grayscale

With ``--gray`` the grayscale codecs are measured, and beside them the RGB codecs on the
same gray photos (sent as RGB, their output read as gray): what the luma-only path gains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from latentwire.shared.codec import Codec
from latentwire.shared.images import open_image
from latentwire.shared.package import ZOO_DIR, list_packages, read_manifest
from latentwire.training.compare import bd_rate, classical_points, plot, point
from latentwire.training.data import image_files
from latentwire.training.photos import find_folders

# The settings the published Kodak figures were measured at (training.compare sweeps more).
CLASSICAL = {
    "JPEG": [5, 10, 20, 30, 40, 50, 60, 75, 85, 95],
    "WebP": [0, 5, 10, 20, 30, 40, 50, 60, 75, 90],
    "AVIF": [10, 25, 40, 50, 60, 70, 80, 90],
}
AS_RGB = "latentwire (as RGB)"  # --gray: the RGB codecs on the gray photos
# CompressAI's bmshj2018-factorized on Kodak (bpp, RGB PSNR), its published results.
BMSHJ2018_FACTORIZED = [
    (0.123, 26.91),
    (0.189, 28.22),
    (0.288, 29.62),
    (0.440, 31.28),
    (0.648, 32.96),
    (0.967, 35.38),
]


def photo_codecs(extra: list[Path], channels: int) -> list[Path]:
    """The any-size codecs (shipped, and in ``extra`` roots) of ``channels``, by level."""
    folders = [p for root in [ZOO_DIR, *extra] for p in list_packages(root)]
    found = []
    for folder in folders:
        manifest = read_manifest(folder)
        any_size = (
            manifest.family == "hyperprior" or manifest.config.get("transform") == "bmshj2018"
        )
        if (
            manifest.task == "codec"
            and any_size
            and manifest.config["shape"]["channels"] == channels
        ):
            found.append(folder)
    return sorted(
        found,
        key=lambda p: (read_manifest(p).id.rpartition("-q")[0], read_manifest(p).quality or 0),
    )


def latentwire_points(
    photos: list[np.ndarray], folders: list[Path], effort: int, label: str = "latentwire"
) -> list[dict]:
    """Each codec's point; a gray photo given to an RGB codec goes in as RGB and its
    output is read as gray (BT.601 luma, as Pillow converts)."""
    rows = []
    for folder in folders:
        codec = Codec.load(folder)
        manifest = codec.manifest
        coded, decoded, enc, dec = [], [], [], []
        for photo in tqdm(photos, desc=manifest.id, leave=False):
            image = Image.fromarray(photo).convert("L" if codec.shape[0] == 1 else "RGB")
            pixels = np.ascontiguousarray(np.atleast_3d(np.asarray(image)).transpose(2, 0, 1))
            began = time.perf_counter()
            coded += codec.compress([pixels], effort)
            enc.append(time.perf_counter() - began)
            began = time.perf_counter()
            (out,) = codec.decompress(coded[-1:])
            dec.append(time.perf_counter() - began)
            if out.ndim != photo.ndim:
                out = np.asarray(Image.fromarray(out).convert("L"))
            decoded.append(out)
        setting = manifest.id + (f" effort {effort}" if effort else "")
        sizes = [len(ir) for ir in coded]
        rows.append(point(label, setting, photos, sizes, decoded, (enc, dec)))
    return rows


def published_points(ax: Any) -> None:
    bpp, db = zip(*BMSHJ2018_FACTORIZED, strict=True)
    ax.plot(bpp, db, "k^:", label="bmshj2018-factorized (published)")


def as_rgb_points(ax: Any, rows: list[dict]) -> None:
    pts = sorted((r["bpp"], r["psnr_db"]) for r in rows)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o:", label=AS_RGB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, action="append", default=[], help="extra roots")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--gray", action="store_true", help="Kodak in grayscale, the grayscale codecs"
    )
    parser.add_argument("--effort", type=int, default=0, help="latentwire's encoder effort")
    args = parser.parse_args()

    mode = "L" if args.gray else "RGB"
    photos = []
    for path in image_files(find_folders("kodak", args.data_dir)[0]):
        photos.append(np.asarray(open_image(path.read_bytes(), 1 << 28).convert(mode)))
    folders = photo_codecs(args.models, 1 if args.gray else 3)
    ours = latentwire_points(photos, folders, args.effort)
    as_rgb = []
    if args.gray:  # the same gray photos through the RGB codecs
        as_rgb = latentwire_points(photos, photo_codecs(args.models, 3), args.effort, AS_RGB)
    rows = ours + as_rgb + classical_points(photos, CLASSICAL, progress=True)
    published = [{"psnr_db": d, "bpp": b} for b, d in BMSHJ2018_FACTORIZED]
    classical = {name: [r for r in rows if r["codec"] == name] for name in CLASSICAL}
    bd = {name: bd_rate(points, ours, "bpp") for name, points in classical.items()}
    if not args.gray:  # published in RGB PSNR only
        bd["bmshj2018-factorized (published)"] = bd_rate(published, ours, "bpp")
    if as_rgb:
        bd[AS_RGB] = bd_rate(as_rgb, ours, "bpp")
    bd_y = {name: bd_rate(points, ours, "bpp", "psnr_y_db") for name, points in classical.items()}
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = (
        "rd_kodak"
        + ("_gray" if args.gray else "")
        + (f"_effort{args.effort}" if args.effort else "")
    )
    result = {
        "dataset": "kodak" + (" (grayscale)" if args.gray else ""),
        "effort": args.effort,
        "images": len(photos),
        "machine": machine,
        "rows": rows,
        "bd_rate_percent_vs": bd,
        "bd_rate_y_percent_vs": bd_y,
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(
        rows,
        out / f"{name}.png",
        "Kodak" + (" in grayscale" if args.gray else "") + ", 24 photos, each coded on its own",
        rate="bpp",
        rate_label="bits per pixel (whole message)",
        psnr_label="PSNR (dB)" if args.gray else "RGB PSNR (dB)",
        limits=((0, 2.5), (22, 44)),
        extra=(lambda ax: as_rgb_points(ax, as_rgb)) if args.gray else published_points,
    )
    print(f"kodak: {len(photos)} photos on {machine}")
    header = ("codec", "setting", "bpp", "PSNR", "Y-PSNR", "enc ms", "dec ms")
    print("{:<22}{:<15}{:>7}{:>8}{:>8}{:>9}{:>9}".format(*header))
    for r in rows:
        print(
            f"{r['codec']:<22}{r['setting']:<15}{r['bpp']:>7.3f}{r['psnr_db']:>8.2f}"
            f"{r['psnr_y_db']:>8.2f}{r['encode_ms']:>9.1f}{r['decode_ms']:>9.1f}"
        )
    for name, rates in (("gray", bd),) if args.gray else (("RGB", bd), ("Y", bd_y)):
        for anchor, value in rates.items():
            shown = "n/a (curves do not overlap)" if value is None else f"{value:+.1f}%"
            print(f"BD-rate ({name} PSNR) vs {anchor}: {shown}")


if __name__ == "__main__":
    main()
