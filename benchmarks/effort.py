"""What encoder effort buys: bytes, PSNR, rate + lambda * distortion and encode time per
effort level, the same images through the same codec (and the same decoder).

    python benchmarks/effort.py fashion-mnist-q3 --limit 500
    python benchmarks/effort.py photo-q3 --limit 6 --efforts 0,1,2

Images: the Fashion-MNIST or MNIST test set for a 28x28 codec, Kodak for a photo codec
(the first ``--limit`` of each). The cost is the training loss per image: bits +
lambda * 255^2 * MSE on [0, 1] times the pixels, as effort minimizes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from latentwire.shared.codec import EFFORT_STEPS, Codec
from latentwire.shared.images import SIGNED, model_input, open_image
from latentwire.shared.package import find_package
from latentwire.training.data import image_files, load_datasets
from latentwire.training.metrics import psnr
from latentwire.training.photos import find_folders


def evaluation_images(codec: Codec, limit: int, data_dir: str | None) -> list[np.ndarray]:
    """uint8 (C, H, W) images the codec takes: its data set's test images, or Kodak."""
    if codec.model.any_size:
        mode = "L" if codec.shape[0] == 1 else "RGB"
        files = image_files(find_folders("kodak", data_dir)[0])[:limit]
        return [
            model_input(open_image(p.read_bytes(), 1 << 28).convert(mode), codec.shape)
            for p in files
        ]
    _, test_set, _ = load_datasets(codec.manifest.dataset, data_dir=data_dir)
    x = torch.stack([test_set[i] for i in range(min(limit, len(test_set)))])
    return list(SIGNED.to_pixels(x).to(torch.uint8).numpy())


def as_decoded(image: np.ndarray) -> np.ndarray:
    """(C, H, W) as the decoder returns it: (H, W) gray, (H, W, 3) RGB."""
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def measure(codec: Codec, images: list[np.ndarray], effort: int) -> dict:
    began = time.perf_counter()
    irs = [ir for image in images for ir in codec.compress([image], effort)]
    seconds = time.perf_counter() - began
    pairs = list(zip((as_decoded(i) for i in images), codec.decompress(irs), strict=True))
    sizes = np.array([len(ir) for ir in irs], dtype=np.float64)
    values = np.array([a.size for a, _ in pairs], dtype=np.float64)  # pixels x channels
    squared = np.array([np.mean((a / 255.0 - b / 255.0) ** 2) for a, b in pairs])
    # bits + lambda * 255^2 * MSE * pixels, as in training (MSE over the channels)
    cost = 8 * sizes + codec.lmbda * 255**2 * squared * values / images[0].shape[0]
    return {
        "effort": effort,
        "steps": EFFORT_STEPS[effort],
        "bytes": round(float(sizes.mean()), 2),
        "bpp": round(float((8 * sizes * images[0].shape[0] / values).mean()), 4),
        "psnr_db": round(float(np.mean([psnr(a, b) for a, b in pairs])), 3),
        "cost": round(float(cost.mean()), 1),
        "encode_s_per_image": round(seconds / len(images), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a shipped codec id or a package folder")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--efforts", default="0,1,2,3")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    folder = Path(args.model) if Path(args.model).is_dir() else find_package(args.model)
    codec = Codec.load(folder)
    images = evaluation_images(codec, args.limit, args.data_dir)
    rows = []
    for effort in (int(e) for e in args.efforts.split(",")):
        rows.append(measure(codec, images, effort))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "model": codec.id,
        "images": len(images),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"effort_{codec.id}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
