"""sr2x on CUDA in fp32, fp16 and bf16: Set5 and BSD100 quality, distance from fp32, speed.

For each precision: Y-PSNR/SSIM against the ground truth (the protocol of
``latentwire eval sr``), the PSNR of its output against fp32's output, and 176x176 windows
per second through the model in chunks of :func:`chunk_size` (what the server runs).
Needs a CUDA GPU; the CPU serves in fp32 only.

    python benchmarks/sr_precision.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rate_distortion import psnr

from latentwire.shared.models.loading import load_model
from latentwire.shared.package import find_package
from latentwire.shared.resample import downscale, modcrop
from latentwire.shared.upscaling import PRECISIONS, chunk_size, run_windows, upscale_image
from latentwire.training.data import default_data_dirs, image_files
from latentwire.training.recipes.sr import y_metrics

WINDOW = 176  # the server's window: a 128 tile and 24 pixels of context each side


def distance_from(reference: dict[str, Image.Image], outputs: dict[str, Image.Image]) -> float:
    """Mean PSNR (dB, RGB) of outputs against the reference outputs of the same images."""
    values = []
    for name, image in outputs.items():
        a, b = np.asarray(image), np.asarray(reference[name])
        values.append(100.0 if np.array_equal(a, b) else psnr(a, b))  # 100: identical
    return float(np.mean(values))


def windows_per_second(model: torch.nn.Module, seconds: float = 3.0) -> float:
    chunk = chunk_size(next(model.parameters()).device)
    g = np.random.default_rng(0)
    windows = [g.integers(0, 256, (WINDOW, WINDOW, 3), dtype=np.uint8) for _ in range(chunk)]
    run_windows(model, windows)  # warm-up: kernels chosen, memory allocated
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        run_windows(model, windows)  # returns uint8 on the CPU: the GPU has finished
        done += chunk
    return done / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sr2x")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("sr_precision.py needs a CUDA GPU (on a CPU the server runs fp32 only)")
    data_dir = args.data_dir or next(d for d in default_data_dirs() if (d / "set5").is_dir())
    torch.backends.cudnn.benchmark = False  # the server's setting: same kernels every call
    model, manifest = load_model(find_package(args.model))
    cuda = torch.device("cuda")
    rows = []
    reference: dict[str, dict[str, Image.Image]] = {}
    for precision, dtype in PRECISIONS.items():
        hosted = copy.deepcopy(model).to(cuda, dtype)
        row: dict = {"precision": precision}
        for test_set in ("set5", "bsd100"):
            outputs, scores = {}, []
            for path in image_files(data_dir / test_set):
                with Image.open(path) as image:
                    truth = modcrop(image.convert("RGB"), 2)
                outputs[path.name] = upscale_image(hosted, downscale(truth, 2))
                scores.append(y_metrics(outputs[path.name], truth, border=2))
            psnr, ssim = np.mean(scores, axis=0)
            reference.setdefault(test_set, outputs)  # fp32 comes first
            row.update(
                {
                    f"{test_set}_psnr_y_db": round(float(psnr), 3),
                    f"{test_set}_ssim_y": round(float(ssim), 4),
                    f"{test_set}_psnr_vs_fp32_db": round(
                        distance_from(reference[test_set], outputs), 2
                    ),
                }
            )
        row["windows_per_s"] = round(windows_per_second(hosted), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"device": torch.cuda.get_device_name(), "model": manifest.id, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sr_precision_cuda.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
