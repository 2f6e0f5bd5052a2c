"""Rate-distortion of latentwire's codecs against PNG, JPEG, WebP and AVIF (Pillow).

Every image of the test set is coded one by one. For latentwire, the size is the whole IR
message (header included) and the quality is measured on the image the light client
decodes. Writes a JSON and a CSV table, an RD plot, BD-rates against WebP and JPEG, and
the codec's speed on this machine.

    python benchmarks/rate_distortion.py --dataset fashion-mnist
    python benchmarks/rate_distortion.py --dataset mnist --limit 1000
    python benchmarks/rate_distortion.py --dataset fashion-mnist --effort 3
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from latentwire.client import decode_array, decode_batch
from latentwire.shared.codec import Codec
from latentwire.shared.images import SIGNED
from latentwire.shared.package import list_packages, read_manifest
from latentwire.training.compare import bd_rate, classical_points, plot
from latentwire.training.data import load_datasets
from latentwire.training.metrics import psnr

TARGET_DB = (24.0, 36.0)  # the PSNR range of the codec targets (issue #3)
CLASSICAL = {
    "JPEG": [5, 10, 20, 30, 50, 75, 90, 95],
    "WebP": [0, 5, 10, 20, 30, 40, 50, 60, 75, 90, 100],
    "AVIF": [0, 10, 25, 40, 55, 70, 85, 95],
}


def msssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image MS-SSIM over 3 scales (28, 14, 7) with a 3x3 Gaussian window (sigma 1.5),
    the first three of the standard scale weights renormalized: the usual 5 scales with an
    11x11 window need sides over 160 pixels, and 28x28 images allow no more."""
    x = torch.from_numpy(a).float().unsqueeze(1) / 255
    y = torch.from_numpy(b).float().unsqueeze(1) / 255
    weights = torch.tensor([0.0448, 0.2856, 0.3001])
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(3, 1.5).repeat(1, 1, 1, 1)
    values = []
    for level in range(len(weights)):
        ssim_map, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False)
        values.append(torch.relu(cs if level < len(weights) - 1 else ssim_map).flatten())
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1)  # (N, levels)
    return torch.prod(stacked**weights, dim=1).numpy()


def summarize(name: str, setting: str, sizes, originals, decoded) -> dict:
    pixels = originals.shape[1] * originals.shape[2]
    return {
        "codec": name,
        "setting": setting,
        "bytes": float(np.mean(sizes)),
        "bpp": float(np.mean(sizes) * 8 / pixels),
        "psnr_db": float(np.mean(psnr(originals, decoded, per_image=True))),
        "ms_ssim": float(np.mean(msssim(originals, decoded))),
    }


def png_and_classical_points(images: np.ndarray) -> list[dict]:
    rows = []
    png_sizes = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG", optimize=True)
        png_sizes.append(buffer.tell())
    rows.append(summarize("PNG", "optimize", png_sizes, images, images))

    def measure(name: str, setting: str, originals, sizes, decoded, times) -> dict:
        return summarize(name, setting, sizes, images, np.stack(decoded))

    return rows + classical_points(list(images), CLASSICAL, measure, progress=True)


def latentwire_points(dataset: str, images: np.ndarray, effort: int = 0) -> tuple[list, list]:
    """Every shipped codec of ``dataset`` on uint8 images (N, H, W), encoded at ``effort``."""
    rows, speed = [], []
    codecs = [p for p in list_packages() if read_manifest(p).task == "codec"]
    codecs = [p for p in codecs if read_manifest(p).dataset == dataset]
    for folder in sorted(codecs, key=lambda p: read_manifest(p).quality or 0):
        codec = Codec.load(folder)
        manifest = codec.manifest
        began = time.perf_counter()
        irs = []
        for start in range(0, len(images), 1000):
            irs += codec.compress(list(images[start : start + 1000, None]), effort)
        encode_s = time.perf_counter() - began
        began = time.perf_counter()
        decoded = []
        for start in range(0, len(irs), 1000):
            decoded += decode_batch(irs[start : start + 1000])
        decode_s = time.perf_counter() - began
        latencies = []
        for ir in irs[:300]:
            t = time.perf_counter()
            decode_array(ir)
            latencies.append(time.perf_counter() - t)
        setting = manifest.id + (f" effort {effort}" if effort else "")
        sizes = [len(ir) for ir in irs]
        rows.append(summarize("latentwire", setting, sizes, images, np.stack(decoded)))
        speed.append(
            {
                "model": manifest.id,
                "effort": effort,
                "encode_images_per_s (torch, batches of 1000)": round(len(images) / encode_s),
                "decode_images_per_s (onnxruntime, batches of 1000)": round(len(images) / decode_s),
                "decode_one_image_ms (median)": round(statistics.median(latencies) * 1000, 3),
            }
        )
    return rows, speed


def png_line(rows: list[dict]) -> Callable[[Any], None]:
    """A vertical mark at lossless PNG's mean size, when the rows have it."""

    def draw(ax: Any) -> None:
        png = [r for r in rows if r["codec"] == "PNG"]
        if png:
            ax.axvline(png[0]["bytes"], color="grey", lw=0.8, label=f"PNG {png[0]['bytes']:.0f} B")

    return draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--codecs-only", action="store_true", help="latentwire's points and speed only (fast)"
    )
    parser.add_argument("--effort", type=int, default=0, help="latentwire's encoder effort")
    args = parser.parse_args()

    _, test_set, _ = load_datasets(args.dataset, data_dir=args.data_dir)
    n = min(args.limit or len(test_set), len(test_set))
    x = torch.stack([test_set[i] for i in range(n)])
    images = SIGNED.to_pixels(x[:, 0]).to(torch.uint8).numpy()

    ours, speed = latentwire_points(args.dataset, images, args.effort)
    rows = ours + ([] if args.codecs_only else png_and_classical_points(images))
    anchors = {a: [r for r in rows if r["codec"] == a] for a in ("WebP", "JPEG", "AVIF")}
    bd = {anchor: bd_rate(points, ours) for anchor, points in anchors.items()}
    bd_target = {
        anchor: bd_rate(points, ours, within=TARGET_DB) for anchor, points in anchors.items()
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = (
        f"rd_{args.dataset}"
        + ("_codecs" if args.codecs_only else "")
        + (f"_effort{args.effort}" if args.effort else "")
    )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    result = {
        "dataset": args.dataset,
        "test_images": n,
        "effort": args.effort,
        "machine": machine,
        "rows": rows,
        "bd_rate_percent_vs": bd,
        "bd_rate_percent_vs_over_24_36_db": bd_target,
        "speed": speed,
    }
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = f"{args.dataset}, {n} test images, one image per message"
    plot(rows, out / f"{stem}.png", title, extra=png_line(rows))

    print(f"{args.dataset}: {n} test images on {machine}")
    print(f"{'codec':<11}{'setting':<20}{'bytes':>8}{'bpp':>8}{'PSNR':>8}{'MS-SSIM':>9}")
    for r in rows:
        print(
            f"{r['codec']:<11}{r['setting']:<20}{r['bytes']:>8.1f}{r['bpp']:>8.3f}"
            f"{r['psnr_db']:>8.2f}{r['ms_ssim']:>9.4f}"
        )
    for anchor, value in bd.items():
        shown = "n/a (curves do not overlap)" if value is None else f"{value:+.1f}%"
        within = bd_target[anchor]
        also = (
            "" if within is None else f" ({within:+.1f}% over {TARGET_DB[0]:g}-{TARGET_DB[1]:g} dB)"
        )
        print(f"BD-rate vs {anchor}: {shown}{also}")
    for s in speed:
        print(json.dumps(s))


if __name__ == "__main__":
    main()
