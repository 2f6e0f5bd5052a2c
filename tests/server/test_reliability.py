"""Load, crash and shutdown on the real server (loopback, bounded in count and time).

Every request here is checked for the right answer, not only for a 200.
"""

import asyncio
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from latentwire.client import AsyncClient, Client
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import find_package
from latentwire.shared.upscaling import upscale_image
from latentwire.training.data import load_datasets
from tests.server.conftest import free_port, running_server


@pytest.fixture(scope="module")
def digits() -> list[np.ndarray]:
    """200 real Fashion-MNIST test images."""
    _, test_set, _ = load_datasets("fashion-mnist")
    return [test_set.images[i, 0].numpy() for i in range(200)]


@pytest.fixture(scope="module")
def crops(data_dir) -> list[Image.Image]:
    """Small real photo crops of several sizes, RGB and grayscale."""
    with Image.open(data_dir / "bsd100" / "101085.jpg") as photo:
        photo = photo.convert("RGB")
    boxes = [(0, 0, 32, 32), (40, 40, 88, 80), (100, 20, 164, 84), (200, 100, 300, 160)]
    out = [photo.crop(box) for box in boxes]
    return out + [im.convert("L") for im in out]


@pytest.fixture(scope="module")
def upscaled(crops) -> list[np.ndarray]:
    model = load_model(find_package("sr2x"))[0]
    return [np.asarray(upscale_image(model, crop)) for crop in crops]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024


def server_errors(url: str) -> dict[str, float]:
    """5xx answers other than the deliberate 503, by route and status, from /metrics."""
    text = httpx.get(f"{url}/metrics").text
    found = re.findall(r'latentwire_requests_total\{route="([^"]+)",status="(5\d\d)"\} (\S+)', text)
    return {f"{r} {s}": float(n) for r, s, n in found if s != "503" and float(n) > 0}


async def mixed_load(url, digits, crops, encodes, upscales, concurrency):
    """``encodes`` /encode and ``upscales`` /upscale requests, interleaved, ``concurrency``
    at a time, through the real client (which retries 503s). Returns (kind, index, result)."""
    jobs = [("encode", i % len(digits)) for i in range(encodes)]
    for j in range(upscales):  # spread evenly through the encodes
        jobs.insert(j * (encodes // upscales + 1), ("upscale", j % len(crops)))
    gate = asyncio.Semaphore(concurrency)
    async with AsyncClient(url, retries=8) as client:

        async def one(kind, index):
            async with gate:
                if kind == "encode":
                    return kind, index, await client.encode(digits[index])
                return kind, index, np.asarray(await client.upscale(crops[index]))

        return await asyncio.gather(*(one(k, i) for k, i in jobs))


def check(results, expected_irs, upscaled):
    for kind, index, result in results:
        if kind == "encode":
            assert result == expected_irs[index], f"encode {index}"
        else:
            assert np.array_equal(result, upscaled[index]), f"upscale {index}"


def test_thousands_of_mixed_requests_are_all_right_and_memory_stays_flat(digits, crops, upscaled):
    with running_server() as (url, proc):
        with Client(url) as client:
            expected = [client.encode(d) for d in digits]
        warm = asyncio.run(mixed_load(url, digits, crops, 800, 80, 64))
        check(warm, expected, upscaled)
        before = rss_mib(proc.pid)
        started = time.monotonic()
        results = asyncio.run(mixed_load(url, digits, crops, 3000, 300, 64))
        seconds = time.monotonic() - started
        after = rss_mib(proc.pid)
        check(results, expected, upscaled)
        assert server_errors(url) == {}
        print(
            f"\nmixed load: {len(results)} requests (3000 /encode + 300 /upscale) at "
            f"concurrency 64 in {seconds:.1f} s, 0 failures; "
            f"server RSS {before:.0f} -> {after:.0f} MiB"
        )
        assert after - before < 64, f"RSS grew {after - before:.0f} MiB under load"


def test_a_server_killed_mid_load_and_restarted_loses_no_request(digits, crops, upscaled):
    """SIGKILL in the middle of a run, a new server on the same port: the client's retries
    carry every (idempotent) request through with the right answer."""
    port = free_port()
    total = 600
    with running_server(port=port) as (url, first):
        with Client(url) as client:
            expected = [client.encode(d) for d in digits]

        def work(i: int):
            with Client(url, retries=10, timeout=30) as client:
                if i % 10 == 0:
                    index = (i // 10) % len(crops)
                    return "upscale", index, np.asarray(client.upscale(crops[index]))
                return "encode", i % len(digits), client.encode(digits[i % len(digits)])

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(work, i) for i in range(total)]
            while sum(f.done() for f in futures) < total // 5:
                time.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait()
            unfinished = sum(not f.done() for f in futures)
            with running_server(port=port) as (_url, _proc):
                results = [f.result(timeout=120) for f in futures]
                served_after = httpx.get(f"{url}/metrics").text
    assert first.returncode == -signal.SIGKILL
    assert unfinished > total // 2, "the kill came too late to matter"
    check(results, expected, upscaled)
    after_restart = re.search(
        r'latentwire_requests_total\{route="/encode",status="200"\} (\S+)', served_after
    )
    assert after_restart and float(after_restart[1]) > 0, "the new server served nothing"
    print(f"\nkill and restart: {total} requests, {unfinished} unfinished at SIGKILL, 0 lost")


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(data_dir):
    with Image.open(data_dir / "set5" / "baby.png") as image:
        big = image.convert("RGB")  # 512x512: seconds of work on a CPU
    env = {"LATENTWIRE_SHUTDOWN_GRACE_S": "120"}
    with running_server(env) as (url, proc):
        with ThreadPoolExecutor(3) as pool:
            clients = [Client(url, retries=0, timeout=120) for _ in range(3)]
            futures = [pool.submit(c.upscale, big) for c in clients]
            time.sleep(0.5)  # all three are in: one on the model, two queued
            assert not any(f.done() for f in futures)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{url}/healthz", timeout=5)
            for future in futures:
                assert future.result(timeout=120).size == (1024, 1024)
            for client in clients:
                client.close()
        # It exits by itself once they are done (uvicorn re-raises the SIGTERM it handled).
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
