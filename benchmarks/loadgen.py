"""What the load benchmarks share: the real server in a subprocess and a closed-loop driver.

The driver is asyncio + aiohttp: light enough that on a 2-core machine the server, not the
load generator, sets the pace. Each measurement also reports the CPU time the server spent
per request and the cores each side kept busy (from ``/proc`` on Linux): requests per
second depend on the machine of the day, CPU milliseconds per request much less so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np

# request number -> (path, keyword arguments for ClientSession.post, images it carries,
# their pixels)
RequestMaker = Callable[[int], tuple[str, dict, int, int]]


def describe_machine() -> str:
    """The machine line every result records: architecture, CPU model and core count."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # Linux: the model name alone ("AMD EPYC") hides the generation
        lines = (line.partition(":") for line in cpuinfo.read_text().splitlines())
        fields = {key.strip(): value.strip() for key, _, value in lines}
        cpu = f"{fields.get('model name', cpu)} (family {fields.get('cpu family', '?')}, "
        cpu += f"model {fields.get('model', '?')})"
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} CPUs (server and load on one machine)"


@dataclass
class RunningServer:
    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far, its child processes (the
        upscaler's lanes) included; None off Linux."""
        if not Path(f"/proc/{self.pid}/stat").exists():
            return None
        return sum(_process_cpu_seconds(pid) for pid in [self.pid, *_children(self.pid)])


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found + [grandchild for child in found for grandchild in _children(child)]


def _process_cpu_seconds(pid: int) -> float:
    try:
        # Fields after the command name (which may hold spaces): utime and stime are 14, 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:  # gone since it was listed
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(batching: bool, env: dict[str, str] | None = None):
    """``latentwire serve`` on a free loopback port, batching on or off, on the CPU unless
    ``env`` names another device; yields it as a :class:`RunningServer`."""
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
            yield RunningServer(url, proc.pid)
        finally:
            proc.terminate()
            proc.wait()


@contextmanager
def servers(modes: Iterable[bool], env: dict[str, str] | None = None):
    """One server per batching mode, all started before any is measured, so that the
    caller can take each mode's cell in turn: this machine's speed drifts over minutes,
    and a ratio of two cells taken a minute apart is worth more than one of two runs."""
    with ExitStack() as stack:
        yield {batching: stack.enter_context(server(batching, env)) for batching in modes}


@dataclass
class Load:
    """A closed loop: ``concurrency`` workers, each sending its next request when one
    returns; ``make(i)`` gives request number ``i``."""

    make: RequestMaker
    concurrency: int


async def _drive(server: RunningServer, loads: list[Load], seconds: float) -> list[dict]:
    """Every load at once for ``seconds``; a row per load. The server's CPU time is for the
    whole cell, so per request it is given only when there is one load."""
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=sum(load.concurrency for load in loads))
    timeout = aiohttp.ClientTimeout(total=300)
    tallies = [{"latencies": [], "images": 0, "pixels": 0, "errors": {}} for _ in loads]
    async with aiohttp.ClientSession(server.url, connector=connector, timeout=timeout) as session:

        async def worker(load: Load, tally: dict, offset: int) -> None:
            i = offset
            while time.perf_counter() < stop:
                began = time.perf_counter()
                path, kwargs, count, area = load.make(i)
                async with session.post(path, **kwargs) as response:
                    await response.read()
                if response.status == 200:
                    tally["latencies"].append(time.perf_counter() - began)
                    tally["images"] += count
                    tally["pixels"] += area
                else:
                    errors = tally["errors"]  # status -> count
                    errors[response.status] = errors.get(response.status, 0) + 1
                i += load.concurrency

        server_before, own_before = server.cpu_seconds(), _own_cpu_seconds()
        began = time.perf_counter()
        await asyncio.gather(
            *(
                worker(load, tally, k)
                for load, tally in zip(loads, tallies, strict=True)
                for k in range(load.concurrency)
            )
        )
        elapsed = time.perf_counter() - began
        server_after, own_after = server.cpu_seconds(), _own_cpu_seconds()
    rows = []
    for tally in tallies:
        lat = np.array(tally["latencies"]) * 1000
        rows.append(
            {
                "requests_per_s": round(len(lat) / elapsed, 2),
                "images_per_s": round(tally["images"] / elapsed, 2),
                "megapixels_per_s": round(tally["pixels"] / elapsed / 1e6, 4),
                "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
                "errors": sum(tally["errors"].values()),
                "error_statuses": tally["errors"],
                "load_cores": round((own_after - own_before) / elapsed, 2),
                "latencies_ms": lat,  # for pooling across cells; dropped before printing
            }
        )
        if server_before is not None and server_after is not None:
            used = server_after - server_before
            rows[-1]["server_cores"] = round(used / elapsed, 2)
            if len(loads) == 1:
                per = round(1000 * used / len(lat), 3) if len(lat) else None
                rows[-1]["server_cpu_ms_per_request"] = per
    return rows


def drive(server: RunningServer, make: RequestMaker, concurrency: int, seconds: float) -> dict:
    """Closed loop: ``concurrency`` workers, each sending its next request when one returns."""
    row = asyncio.run(_drive(server, [Load(make, concurrency)], seconds))[0]
    del row["latencies_ms"]
    return row


def drive_together(server: RunningServer, loads: list[Load], seconds: float) -> list[dict]:
    """Several closed loops against one server at once (a row each, with its latencies)."""
    return asyncio.run(_drive(server, loads, seconds))


def print_table(rows: list[dict], columns: list[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
