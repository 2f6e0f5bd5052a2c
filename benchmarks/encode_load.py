"""Load on POST /encode: requests per second and latency, batching on and off.

Starts the real server (uvicorn, loopback) twice, once with batching and once without,
and drives each from this process with asyncio + httpx at several concurrency levels,
with single-image requests and with /encode/batch requests of 16 images.

    python benchmarks/encode_load.py --seconds 10 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from latentwire.training.data import load_datasets


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


async def drive(url: str, bodies: list[bytes], concurrency: int, seconds: float, batch: int):
    """Closed loop: ``concurrency`` workers, each sending its next request when one returns."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop:
                began = time.perf_counter()
                if batch == 1:
                    r = await client.post("/encode", files={"file": bodies[i % len(bodies)]})
                else:
                    files = [("files", bodies[(i + k) % len(bodies)]) for k in range(batch)]
                    r = await client.post("/encode/batch", files=files)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return {
        "requests_per_s": round(len(lat) / elapsed, 1),
        "images_per_s": round(len(lat) * batch / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    _, test_set, _ = load_datasets("fashion-mnist")
    bodies = []
    for i in range(512):
        buffer = io.BytesIO()
        Image.fromarray(test_set.images[i, 0].numpy()).save(buffer, "PNG")
        bodies.append(buffer.getvalue())

    rows = []
    for batching in (True, False):
        proc, url = start_server(batching)
        try:
            for batch in (1, 16):
                for concurrency in levels:
                    row = asyncio.run(drive(url, bodies, concurrency, args.seconds, batch))
                    row.update(batching=batching, images_per_request=batch, concurrency=concurrency)
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
    columns = ["batching", "images_per_request", "concurrency", "requests_per_s"]
    columns += ["images_per_s", "p50_ms", "p99_ms", "errors"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
