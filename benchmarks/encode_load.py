"""Load on POST /encode: requests per second and latency, batching on and off.

Starts the real server (uvicorn, loopback) twice, once with batching and once without,
and drives each from this process with asyncio + aiohttp (a client light enough to leave
the server most of the two cores) at several concurrency levels: single images as the raw
body (what ``Client.encode`` sends), single images as multipart, and /encode/batch requests
of 16 images.

    python benchmarks/encode_load.py --seconds 10 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from PIL import Image

from latentwire.training.data import load_datasets

BATCH = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "LATENTWIRE_BATCHING": str(batching).lower(), "LATENTWIRE_DEVICE": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentwire.shared.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def request_maker(kind: str, bodies: list[bytes]):
    """(path, keyword arguments) for request ``i`` of a kind: ``raw`` (one image as the body),
    ``multipart`` (one image as field ``file``) or ``batch`` (16 images as fields ``files``)."""

    def make(i: int) -> tuple[str, dict]:
        if kind == "raw":
            headers = {"content-type": "image/png"}
            return "/encode", {"data": bodies[i % len(bodies)], "headers": headers}
        form = aiohttp.FormData()
        count = BATCH if kind == "batch" else 1
        for k in range(count):
            name = "files" if kind == "batch" else "file"
            body = bodies[(i + k) % len(bodies)]
            form.add_field(name, body, filename=f"{k}.png", content_type="image/png")
        return ("/encode/batch" if kind == "batch" else "/encode"), {"data": form}

    return make


async def drive(url: str, bodies: list[bytes], concurrency: int, seconds: float, kind: str):
    """Closed loop: ``concurrency`` workers, each sending its next request when one returns."""
    make = request_maker(kind, bodies)
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop:
                began = time.perf_counter()
                path, kwargs = make(i)
                async with session.post(path, **kwargs) as response:
                    await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    images = BATCH if kind == "batch" else 1
    return {
        "requests_per_s": round(len(lat) / elapsed, 1),
        "images_per_s": round(len(lat) * images / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--requests", default="raw,multipart,batch", help="request kinds")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    _, test_set, _ = load_datasets("fashion-mnist")
    bodies = []
    for i in range(512):
        buffer = io.BytesIO()
        Image.fromarray(test_set.images[i, 0].numpy()).save(buffer, "PNG")
        bodies.append(buffer.getvalue())

    # The load generator shares the CPU with the server: keep its collector off the big
    # start-up heap (torch, the data set) so its pauses do not show up as server latency.
    gc.collect()
    gc.freeze()
    rows = []
    for batching in (True, False):
        proc, url = start_server(batching)
        try:
            for kind in args.requests.split(","):
                for concurrency in levels:
                    row = asyncio.run(drive(url, bodies, concurrency, args.seconds, kind))
                    row.update(batching=batching, request=kind, concurrency=concurrency)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            proc.terminate()
            proc.wait()

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs (server and load on one machine)"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encode_load.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\n{machine}; model fashion-mnist-q3; {args.seconds:.0f} s per cell")
    columns = ["batching", "request", "concurrency", "requests_per_s"]
    columns += ["images_per_s", "p50_ms", "p99_ms", "errors"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
