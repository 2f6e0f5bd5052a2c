"""Load on POST /encode: requests per second and latency, batching on and off.

Starts the real server (uvicorn, loopback) twice, once with batching and once without,
both before measuring, and drives them in turn, cell by cell (this machine's speed drifts
over minutes), from this process with asyncio + aiohttp (a client light enough to leave
the server most of the two cores) at several concurrency levels: single images as the raw
body (what ``Client.encode`` sends), single images as multipart, and /encode/batch requests
of 16 images.

    python benchmarks/encode_load.py --seconds 10 --out benchmarks/results
    # one cell with a server setting changed, for paired runs (run it in turn with and
    # without the setting)
    python benchmarks/encode_load.py --requests raw --concurrency 32 --batching on \
        --server-env LATENTWIRE_CODEC_THREADS=2 --out /tmp/ab
"""

from __future__ import annotations

import argparse
import gc
import io
import json
from pathlib import Path

import aiohttp
from loadgen import describe_machine, drive, print_table, servers
from PIL import Image

from latentwire.training.data import load_datasets

BATCH = 16
PIXELS = 28 * 28


def fashion_pngs(count: int = 512) -> list[bytes]:
    """The first ``count`` Fashion-MNIST test images as PNG files."""
    _, test_set, _ = load_datasets("fashion-mnist")
    bodies = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(test_set.images[i, 0].numpy()).save(buffer, "PNG")
        bodies.append(buffer.getvalue())
    return bodies


def request_maker(kind: str, bodies: list[bytes]):
    """(path, keyword arguments) for request ``i`` of a kind: ``raw`` (one image as the body),
    ``multipart`` (one image as field ``file``) or ``batch`` (16 images as fields ``files``)."""

    def make(i: int) -> tuple[str, dict, int, int]:
        if kind == "raw":
            headers = {"content-type": "image/png"}
            return "/encode", {"data": bodies[i % len(bodies)], "headers": headers}, 1, PIXELS
        form = aiohttp.FormData()
        count = BATCH if kind == "batch" else 1
        for k in range(count):
            name = "files" if kind == "batch" else "file"
            body = bodies[(i + k) % len(bodies)]
            form.add_field(name, body, filename=f"{k}.png", content_type="image/png")
        path = "/encode/batch" if kind == "batch" else "/encode"
        return path, {"data": form}, count, count * PIXELS

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--requests", default="raw,multipart,batch", help="request kinds")
    parser.add_argument("--batching", choices=["both", "on", "off"], default="both")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server under test (repeatable), e.g. LATENTWIRE_CODEC_THREADS=2",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load, unrecorded")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    env = dict(pair.split("=", 1) for pair in args.server_env)
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.batching]

    bodies = fashion_pngs()

    # The load generator shares the CPU with the server: keep its collector off the big
    # start-up heap (torch, the data set) so its pauses do not show up as server latency.
    gc.collect()
    gc.freeze()
    rows = []
    with servers(modes, env) as running:
        if args.warmup > 0:  # first requests pay for lazy imports and allocations
            for each in running.values():
                drive(each, request_maker("raw", bodies), max(levels), args.warmup)
        for kind in args.requests.split(","):
            make = request_maker(kind, bodies)
            for concurrency in levels:
                for batching, each in running.items():  # the modes in turn, cell by cell
                    row = drive(each, make, concurrency, args.seconds)
                    row.update(batching=batching, request=kind, concurrency=concurrency)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: not r["batching"])  # the table: batching on first

    machine = describe_machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encode_load.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\n{machine}; model fashion-mnist-q3; {args.seconds:.0f} s per cell")
    columns = ["batching", "request", "concurrency", "requests_per_s"]
    columns += ["images_per_s", "p50_ms", "p99_ms", "errors", "server_cpu_ms_per_request"]
    columns += ["server_cores", "load_cores"]
    print_table(rows, columns)


if __name__ == "__main__":
    main()
