"""Models hosted together do not wait for each other, and a replica hosts only its tasks
(the real server, uvicorn on loopback)."""

import io
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from latentwire.server.settings import Settings
from latentwire.training.data import load_idx_dataset
from tests.server.conftest import running_server


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def big_photo(data_dir) -> bytes:
    """A 1000x1000 photo: 64 windows, seconds of upscaler time on this CPU."""
    with Image.open(data_dir / "kodak" / "kodim23.png") as image:
        return png(image.convert("RGB").resize((1000, 1000)))


@pytest.fixture(scope="module")
def fashion_png(data_dir) -> bytes:
    images = load_idx_dataset("fashion-mnist", train=False, data_dir=data_dir).images
    return png(Image.fromarray(images[3, 0].numpy()))


def children(pid: int) -> list[int]:
    """The processes ``pid`` started."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def lanes(pid: int) -> list[int]:
    """The upscaler's lane processes (multiprocessing also starts a resource tracker)."""
    spawned = [c for c in children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return spawned


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def test_encode_stays_fast_while_a_big_upscale_is_in_flight(big_photo, fashion_png):
    with running_server() as (url, _proc), ThreadPoolExecutor(1) as pool:
        upscale = pool.submit(httpx.post, f"{url}/upscale", content=big_photo, timeout=300)
        time.sleep(1.0)  # decoded, cut and computing
        latencies = []
        for _ in range(20):
            began = time.monotonic()
            r = httpx.post(f"{url}/encode", content=fashion_png, timeout=60)
            latencies.append(time.monotonic() - began)
            assert r.status_code == 200
        encodes_done = time.monotonic()
        assert not upscale.done(), "the upscale finished first; the test proves nothing"
        assert upscale.result().status_code == 200
        upscale_done = time.monotonic()
    # Each encode costs milliseconds; before per-model workers each waited for whole
    # upscale batches (seconds).
    assert max(latencies) < 0.5, [round(t, 3) for t in latencies]
    assert upscale_done - encodes_done > 1.0


def test_a_small_upscale_takes_turns_with_a_big_one(big_photo, data_dir):
    with Image.open(data_dir / "set5" / "bird.png") as image:
        small = png(image.convert("RGB").crop((0, 0, 96, 96)))  # one window
    with running_server() as (url, _proc), ThreadPoolExecutor(2) as pool:
        big = pool.submit(httpx.post, f"{url}/upscale", content=big_photo, timeout=300)
        time.sleep(1.0)
        began = time.monotonic()
        r = httpx.post(f"{url}/upscale", content=small, timeout=300)
        small_took = time.monotonic() - began
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (192, 192)
        assert not big.done(), "the big upscale finished first; the test proves nothing"
        assert big.result().status_code == 200
    # One step of the big request (4 windows, about 0.3 s here) at most stands before it.
    assert small_took < 2.0


def test_a_codec_replica_hosts_codecs_only_and_says_where_the_rest_is(fashion_png):
    began = time.monotonic()
    with running_server({"LATENTWIRE_TASKS": "codec"}) as (url, proc):
        codec_start = time.monotonic() - began
        codec_rss = rss_mib([proc.pid, *children(proc.pid)])
        assert children(proc.pid) == []  # no upscaler lanes, nothing else either
        assert {m["task"] for m in httpx.get(f"{url}/models").json()} == {"codec"}
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["tasks"] == ["codec"]
        assert httpx.post(f"{url}/encode", content=fashion_png).status_code == 200
        for route in ("/upscale", "/generate"):
            r = httpx.post(f"{url}{route}", content=fashion_png)
            error = r.json()["error"]
            assert r.status_code == 404 and error["code"] == "task_not_hosted"
            assert route in error["message"] and "codec" in error["message"]

    began = time.monotonic()
    with running_server() as (url, proc):
        full_start = time.monotonic() - began
        full_rss = rss_mib([proc.pid, *children(proc.pid)])
        count = len(lanes(proc.pid))
        assert count == Settings().threads_for("upscale")
    print(
        f"\ncodec replica: ready in {codec_start:.1f} s, {codec_rss:.0f} MiB; "
        f"all tasks: {full_start:.1f} s, {full_rss:.0f} MiB ({count} upscaler lanes)"
    )
    assert codec_rss < full_rss


def test_an_upscale_replica_refuses_encodes_with_a_clear_error(fashion_png):
    with running_server({"LATENTWIRE_TASKS": "upscale"}) as (url, _proc):
        assert [m["id"] for m in httpx.get(f"{url}/models").json()] == ["sr2x"]
        for method, path in (("POST", "/encode"), ("GET", "/models/fashion-mnist-q3/decoder")):
            r = httpx.request(method, f"{url}{path}", content=fashion_png)
            assert r.status_code == 404 and r.json()["error"]["code"] == "task_not_hosted"
        r = httpx.post(f"{url}/upscale", content=fashion_png)
        assert r.status_code == 200


def test_tasks_must_be_known():
    assert Settings(tasks="upscale, codec").hosted_tasks == ("codec", "upscale")
    for bad in ("", "codec,encode", "upscale;codec"):
        with pytest.raises(ValueError, match="subset"):
            Settings(tasks=bad)


def test_thread_budgets_default_to_one_per_core_for_the_upscaler():
    settings = Settings()
    assert settings.threads_for("codec") == 1 and settings.threads_for("generate") == 1
    assert settings.threads_for("upscale") == len(os.sched_getaffinity(0))
    assert Settings(upscale_threads=3).threads_for("upscale") == 3


def test_a_killed_server_takes_its_upscaler_lanes_with_it():
    with running_server() as (_url, proc):
        spawned = lanes(proc.pid)
        assert spawned
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in spawned):
            assert time.monotonic() < deadline, "lane processes outlived their server"
            time.sleep(0.1)
