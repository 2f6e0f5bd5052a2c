"""Custom-domain test folders built from ``../shared/data``: what a user's own images
look like to ``latentwire train codec --dataset folder:PATH`` (docs/training.md#your-own-codec).

Each domain is ~2,500 small images of one geometry, cut from images no shipped codec was
trained on (the photo test sets and the MNIST/Fashion-MNIST test splits):

    gray-crops-32   32x32 grayscale crops of the BSD100 photos (25 a photo)
    rgb-crops-64    64x64 RGB crops of the Kodak photos (105 a photo)
    digits-32       MNIST test digits padded to 32x32
    clothes-40      Fashion-MNIST test images resized to 40x40

    python benchmarks/domains.py --out /tmp/domains            # all of them
    python benchmarks/domains.py --out /tmp/domains gray-crops-32

With ``--train``, each domain then goes through the plain one-command run (``latentwire
train codec --dataset folder:PATH --channels C --height H --width W``, plus
``--qualities``), timed on this machine, and the figures of its report (the held-out
images against WebP, JPEG and AVIF) are collected in
``benchmarks/results/custom_domains.json``:

    python benchmarks/domains.py --out /tmp/domains --train
    python benchmarks/domains.py --out /tmp/domains --train --qualities 1-6 gray-crops-32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from latentwire.training.data import image_files, load_idx_dataset
from latentwire.training.photos import find_folders

COUNT = 2500


def crops(folder: str, side: int, mode: str, data_dir: str | None) -> Iterator[Image.Image]:
    """``COUNT`` random ``side`` squares, as many from each photo."""
    files = image_files(find_folders(folder, data_dir)[0])
    rng = np.random.default_rng(0)
    per_photo = -(-COUNT // len(files))
    for path in files:
        with Image.open(path) as photo:
            photo = photo.convert(mode)
            for _ in range(per_photo):
                left = int(rng.integers(0, photo.width - side + 1))
                top = int(rng.integers(0, photo.height - side + 1))
                yield photo.crop((left, top, left + side, top + side))


def test_split(name: str, size: int, pad: bool, data_dir: str | None) -> Iterator[Image.Image]:
    images = load_idx_dataset(name, False, data_dir).images[:COUNT, 0].numpy()
    for pixels in images:
        if pad:
            margin = (size - 28) // 2
            yield Image.fromarray(np.pad(pixels, margin))
        else:
            yield Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS)


DOMAINS: dict[str, Callable[[str | None], Iterator[Image.Image]]] = {
    "gray-crops-32": lambda d: crops("bsd100", 32, "L", d),
    "rgb-crops-64": lambda d: crops("kodak", 64, "RGB", d),
    "digits-32": lambda d: test_split("mnist", 32, True, d),
    "clothes-40": lambda d: test_split("fashion-mnist", 40, False, d),
}


GEOMETRY = {"gray-crops-32": (1, 32), "rgb-crops-64": (3, 64), "digits-32": (1, 32),
            "clothes-40": (1, 40)}  # fmt: skip
RESULTS = Path(__file__).parent / "results" / "custom_domains.json"


def train(name: str, folder: Path, out: Path, qualities: str) -> dict:
    """The plain one-command run on a domain's folder, timed; its report's figures."""
    channels, side = GEOMETRY[name]
    run = out / "runs" / f"{name}-q{qualities}"
    shutil.rmtree(run, ignore_errors=True)  # a fresh run: its time is what is measured
    command = ["latentwire", "train", "codec", "--dataset", f"folder:{folder}"]
    command += ["--channels", str(channels), "--height", str(side), "--width", str(side)]
    command += ["--qualities", qualities, "--no-progress", "--out", str(run)]
    began = time.perf_counter()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - began
    report = json.loads((run / "report" / "report.json").read_text())
    levels = [
        {k: r[k] for k in ("setting", "bytes", "bpp", "psnr_db", "ssim", "size_vs")}
        for r in report["rows"]
        if r["codec"] == "latentwire"
    ]
    return {
        "domain": name,
        "command": " ".join(command),
        "levels": levels,
        "bd_rate_percent_vs": report["bd_rate_percent_vs"],
        "held_out_images": report["held_out_images"],
        "seconds": round(seconds),
        "seconds_per_level": round(seconds / len(levels)),
        "date": report["date"],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }


def build(name: str, out: Path, data_dir: str | None = None) -> Path:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(DOMAINS[name](data_dir)):
        if i == COUNT:
            break
        image.save(folder / f"{name}-{i:05d}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domains", nargs="*", help=f"default: all of {', '.join(DOMAINS)}")
    parser.add_argument("--out", required=True, help="folder to write the domains into")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train", action="store_true", help="then train and report on each")
    parser.add_argument("--qualities", default="3", help="--train: the levels, e.g. 1-6")
    args = parser.parse_args()
    for name in args.domains or DOMAINS:
        if name not in DOMAINS:
            parser.error(f"unknown domain {name!r}")
        folder = build(name, Path(args.out), args.data_dir)
        print(folder)
        if args.train:
            result = train(name, folder, Path(args.out), args.qualities)
            known = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
            key = (result["domain"], result["command"].split("--qualities ")[1].split()[0])
            known = [
                r
                for r in known
                if (r["domain"], r["command"].split("--qualities ")[1].split()[0]) != key
            ]
            RESULTS.write_text(json.dumps([*known, result], indent=2) + "\n")
            for level in result["levels"]:
                ratio = level["size_vs"]["WebP"]
                shown = "n/a" if ratio is None else f"{ratio:.2f}x"
                print(
                    f"{level['setting']}: {level['bytes']:.1f} B at {level['psnr_db']:.2f} dB, "
                    f"{shown} WebP's bytes; {result['seconds_per_level']} s a level"
                )


if __name__ == "__main__":
    main()
