"""Load on POST /upscale: images per second and latency, batching on and off, in one run.

Both servers start first; then each concurrency is measured with batching on, then off,
so a ratio compares two cells taken a minute apart. Beside images per second it reports
input megapixels per second: the mix's images differ 17x in size, so a mode that lets more
small ones through in a cell serves more images without doing more work.

The request mix is real photo crops of four sizes (BSD100, a test set): 96x96 and 150x200
(one window each, of their own shapes), 256x256 (4 windows) and full 321x481 photos
(12 windows) — the last two cut into the same 176x176 windows, which batch across
requests. Each closed-loop worker cycles through the mix.

    python benchmarks/upscale_load.py --seconds 20 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import gc
import io
import json
from pathlib import Path

from loadgen import describe_machine, drive, print_table, servers
from PIL import Image

from latentwire.training.data import default_data_dirs, image_files

SIZES = [(96, 96), (200, 150), (256, 256), (321, 481)]  # (width, height) after cropping


def request_bodies(data_dir: Path, count: int = 8) -> list[bytes]:
    """PNG bodies, sizes in rotation, each from a different BSD100 photo."""
    photos = image_files(data_dir / "bsd100")[:count]
    bodies = []
    for i, path in enumerate(photos):
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.width > image.height:
                image = image.transpose(Image.Transpose.ROTATE_90)  # all portrait: 321x481
        w, h = SIZES[i % len(SIZES)]
        buffer = io.BytesIO()
        image.crop((0, 0, w, h)).save(buffer, "PNG")
        bodies.append(buffer.getvalue())
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,4,8,16,32")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--device", default="cpu", help="the server's: cpu or cuda")
    parser.add_argument("--precision", default="auto", help="the upscaler's on CUDA")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    data_dir = args.data_dir or next(d for d in default_data_dirs() if (d / "bsd100").is_dir())
    bodies = request_bodies(data_dir)
    areas = [w * h for w, h in (Image.open(io.BytesIO(body)).size for body in bodies)]

    def make(i: int) -> tuple[str, dict, int, int]:
        k = i % len(bodies)
        return "/upscale", {"data": bodies[k]}, 1, areas[k]

    gc.collect()
    gc.freeze()  # keep the load generator's collector off its start-up heap
    rows = []
    env = {"LATENTWIRE_DEVICE": args.device, "LATENTWIRE_UPSCALE_PRECISION": args.precision}
    with servers((True, False), env) as running:
        for concurrency in levels:
            for batching, each in running.items():  # the modes in turn, cell by cell
                row = drive(each, make, concurrency, args.seconds)
                row.update(batching=batching, concurrency=concurrency)
                rows.append(row)
                print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: not r["batching"])  # the table: batching on first

    on = {r["concurrency"]: r for r in rows if r["batching"]}
    for r in rows:
        if not r["batching"]:
            r["speedup"] = round(on[r["concurrency"]]["images_per_s"] / r["images_per_s"], 2)
            ratio = on[r["concurrency"]]["megapixels_per_s"] / r["megapixels_per_s"]
            r["speedup_megapixels"] = round(ratio, 2)
    machine = describe_machine()
    name = "upscale_load"
    if args.device != "cpu":
        import torch

        machine += f"; server on {torch.cuda.get_device_name()}, {args.precision} precision"
        name += "_cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine, "sizes": SIZES, "rows": rows}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(f"\n{machine}; model sr2x; {args.seconds:.0f} s per cell; sizes {SIZES}")
    columns = ["batching", "concurrency", "images_per_s", "megapixels_per_s", "p50_ms"]
    columns += ["p99_ms", "errors", "server_cpu_ms_per_request", "server_cores", "load_cores"]
    print_table(rows, columns)
    print("\nbatching on / off:")
    for r in rows:
        if not r["batching"]:
            print(
                f"  concurrency {r['concurrency']}: {r['speedup']}x images per second, "
                f"{r['speedup_megapixels']}x megapixels per second"
            )


if __name__ == "__main__":
    main()
