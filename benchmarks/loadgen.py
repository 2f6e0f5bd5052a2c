"""What the load benchmarks share: the real server in a subprocess and a closed-loop driver.

The driver is asyncio + aiohttp: light enough that on a 2-core machine the server, not the
load generator, sets the pace.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager

import aiohttp
import httpx
import numpy as np

# request number -> (path, keyword arguments for ClientSession.post, images it carries)
RequestMaker = Callable[[int], tuple[str, dict, int]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(batching: bool, env: dict[str, str] | None = None):
    """``latentwire serve`` on a free loopback port, batching on or off, on the CPU unless
    ``env`` names another device; yields its URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "LATENTWIRE_BATCHING": str(batching).lower(),
        "LATENTWIRE_DEVICE": "cpu",
        **(env or {}),
    }
    with tempfile.TemporaryFile() as log:  # the server's output, shown if it fails to start
        proc = subprocess.Popen(
            [sys.executable, "-m", "latentwire.shared.cli", "serve", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            ready = False
            deadline = time.monotonic() + 120
            while not ready and proc.poll() is None and time.monotonic() < deadline:
                try:
                    ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
                except httpx.TransportError:
                    time.sleep(0.2)
            if not ready:
                log.seek(0)
                tail = log.read()[-3000:].decode(errors="replace")
                raise RuntimeError(f"server did not start:\n{tail}")
            yield url
        finally:
            proc.terminate()
            proc.wait()


async def _drive(url: str, make: RequestMaker, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    images = 0
    errors: dict[int, int] = {}  # status -> count
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def worker(offset: int) -> None:
            nonlocal images
            i = offset
            while time.perf_counter() < stop:
                began = time.perf_counter()
                path, kwargs, count = make(i)
                async with session.post(path, **kwargs) as response:
                    await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - began)
                    images += count
                else:
                    errors[response.status] = errors.get(response.status, 0) + 1
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return {
        "requests_per_s": round(len(lat) / elapsed, 2),
        "images_per_s": round(images / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "errors": sum(errors.values()),
        "error_statuses": errors,
    }


def drive(url: str, make: RequestMaker, concurrency: int, seconds: float) -> dict:
    """Closed loop: ``concurrency`` workers, each sending its next request when one returns."""
    return asyncio.run(_drive(url, make, concurrency, seconds))


def print_table(rows: list[dict], columns: list[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in columns) + " |")
