"""Replicas by task behind one proxy that routes by path: real nginx (Debian's package,
with the shipped template docs/deploy/nginx/latentwire.conf.template) on loopback in front
of two codec replicas and one upscale replica, all real servers. Mixed load through it,
and one codec replica killed in the middle."""

import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from string import Template

import httpx
import pytest
from PIL import Image

from latentwire.client import Client
from latentwire.training.data import load_idx_dataset
from tests.conftest import REPO
from tests.server.conftest import free_port, running_server

TEMPLATE = REPO / "docs" / "deploy" / "nginx" / "latentwire.conf.template"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        pytest.fail(
            "nginx is not installed: `make test` installs Debian's nginx package "
            "(apt-get install nginx); install it by hand where make cannot (no root)"
        )
    return found


@contextmanager
def nginx(binary: str, folder: Path, codec: list[str], upscale: list[str]):
    """nginx with the shipped template, on a free loopback port; yields its URL."""
    port = free_port()
    site = Template(TEMPLATE.read_text()).safe_substitute(
        LATENTWIRE_LISTEN=f"127.0.0.1:{port}",
        CODEC_SERVERS=" ".join(f"server {u.removeprefix('http://')};" for u in codec),
        UPSCALE_SERVERS=" ".join(f"server {u.removeprefix('http://')};" for u in upscale),
    )
    (folder / "site.conf").write_text(site)
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    (folder / "nginx.conf").write_text(
        "daemon off;\nworker_processes 1;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\n"
        + "events { worker_connections 1024; }\nhttp {\n  access_log off;\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items()).replace(
            "body_temp_path", "client_body_temp_path"
        )
        + f"  include {folder}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(folder / "nginx.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(nginx_binary, tmp_path_factory):
    """Two codec replicas, one upscale replica and nginx routing between them."""
    with ExitStack() as stack:
        codec = [
            stack.enter_context(running_server({"LATENTWIRE_TASKS": "codec"})) for _ in range(2)
        ]
        upscale = stack.enter_context(running_server({"LATENTWIRE_TASKS": "upscale,generate"}))
        folder = tmp_path_factory.mktemp("nginx")
        url = stack.enter_context(nginx(nginx_binary, folder, [u for u, _ in codec], [upscale[0]]))
        yield {"url": url, "codec": codec, "upscale": upscale}


def test_routes_go_to_the_replicas_that_host_them(cluster, data_dir):
    url = cluster["url"]
    assert {m["task"] for m in httpx.get(f"{url}/models").json()} == {"codec"}
    assert httpx.get(f"{url}/readyz").json()["tasks"] == ["codec"]
    images = load_idx_dataset("fashion-mnist", train=False, data_dir=data_dir).images
    r = httpx.post(f"{url}/encode", content=png(Image.fromarray(images[0, 0].numpy())))
    assert r.status_code == 200 and r.headers["x-latentwire-model"] == "fashion-mnist-q3"
    r = httpx.post(f"{url}/upscale", content=png(Image.new("RGB", (20, 10))))
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (40, 20)
    r = httpx.post(f"{url}/generate", params={"n": 2})
    assert r.status_code == 200
    # The page and the decoder it imports, from the codec replicas.
    r = httpx.get(f"{url}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    r = httpx.get(f"{url}/client/latentwire.js")
    assert r.status_code == 200 and "export async function decode" in r.text
    r = httpx.get(f"{url}/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_killed_codec_replica_loses_no_request_and_upscale_goes_on(cluster, data_dir):
    url = cluster["url"]
    images = load_idx_dataset("fashion-mnist", train=False, data_dir=data_dir).images
    bodies = [png(Image.fromarray(images[i, 0].numpy())) for i in range(64)]
    with Client(cluster["codec"][1][0]) as direct:  # the answers, from the replica that stays
        expected = [direct.encode(body) for body in bodies]
    with Image.open(data_dir / "bsd100" / "101085.jpg") as image:
        photo = png(image.convert("RGB").crop((0, 0, 200, 150)))

    total, killed_after = 600, 150
    done = threading.Event()
    answered = [0]
    upscales: list[tuple[int, float]] = []

    def encode(worker: int) -> list[bool]:
        right = []
        with Client(url, retries=10, backoff=0.1) as client:
            for i in range(worker, total, 8):
                right.append(client.encode(bodies[i % 64]) == expected[i % 64])
                answered[0] += 1
        return right

    def upscale() -> None:
        with Client(url, retries=10, backoff=0.1) as client:
            while not done.is_set():
                began = time.monotonic()
                size = client.upscale(photo).size
                upscales.append((size, time.monotonic() - began))

    victim = cluster["codec"][0][1]
    with ThreadPoolExecutor(9) as pool:
        upscaling = pool.submit(upscale)
        encodes = [pool.submit(encode, k) for k in range(8)]
        while answered[0] < killed_after:
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        results = [ok for future in encodes for ok in future.result()]  # raises if any failed
        done.set()
        upscaling.result()
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert len(results) == total and all(results)  # every encode answered, and right
    assert upscales and all(size == (400, 300) for size, _ in upscales)
