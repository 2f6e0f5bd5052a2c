import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    env: dict[str, str] | None = None, args: tuple[str, ...] = (), port: int | None = None
):
    """The real server: `latentwire serve` under uvicorn on a loopback port (a free one
    unless ``port`` is given)."""
    port = port or free_port()
    full_env = {**os.environ, "LATENTWIRE_DEVICE": "cpu", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentwire.shared.cli", "serve", "--port", str(port), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        proc.log = out  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tiny_codec):
    """A server hosting the shipped codecs plus the codec trained by the test session."""
    with running_server({"LATENTWIRE_MODEL_DIR": str(tiny_codec)}) as (url, _proc):
        yield url


def assert_a_full_queue_refuses(post, count: int = 12) -> None:
    """``count`` concurrent calls of ``post()``: some served, the rest refused at once with
    503 ``overloaded`` and a Retry-After, nothing else."""
    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda _: post(), range(count)))
    statuses = {r.status_code for r in answers}
    assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.headers["retry-after"] and refused.json()["error"]["code"] == "overloaded"
