"""POST /upscale on the real server (uvicorn, loopback): batching, formats, limits, faults."""

import io
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from latentwire.client import Client
from latentwire.server.settings import Settings
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import find_package
from latentwire.shared.upscaling import upscale_image
from tests.server.conftest import assert_a_full_queue_refuses, running_server


@pytest.fixture(scope="module")
def model():
    return load_model(find_package("sr2x"))[0]


@pytest.fixture(scope="module")
def photos(data_dir) -> list[Image.Image]:
    """Real photos of different sizes and modes."""
    out = []
    for name in ("bird.png", "butterfly.png", "woman.png"):
        with Image.open(data_dir / "set5" / name) as image:
            out.append(image.convert("RGB"))
    with Image.open(data_dir / "bsd100" / "101085.jpg") as image:
        out.append(image.convert("RGB").crop((40, 30, 240, 157)))  # 200x127
        out.append(image.convert("L").crop((0, 0, 90, 61)))  # grayscale, smaller than a window
    return out


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def upscale_server():
    with running_server() as (url, _proc):
        yield url


def test_concurrent_upscales_match_offline_and_are_batched(upscale_server, photos, model):
    expected = [np.asarray(upscale_image(model, p)) for p in photos]
    jobs = [i % len(photos) for i in range(3 * len(photos))]

    def one(i: int) -> np.ndarray:
        r = httpx.post(
            f"{upscale_server}/upscale",
            content=png(photos[i]),
            headers={"content-type": "image/png"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        return np.asarray(Image.open(io.BytesIO(r.content)))

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(one, jobs))
    for i, result in zip(jobs, results, strict=True):
        assert result.shape == expected[i].shape
        np.testing.assert_array_equal(result, expected[i])  # alone or batched: same pixels
    metrics = httpx.get(f"{upscale_server}/metrics").text
    count = float(re.search(r'latentwire_batch_size_count\{model="sr2x"\} (\S+)', metrics)[1])
    # A request goes to the batcher in steps of at most `step` windows; batches of one
    # request's steps alone would number at least this many.
    step = Settings().upscale_tiles(cuda=False)
    alone = sum(-(-windows(photos[i]) // step) for i in jobs)
    assert count < alone  # batches held windows of several requests


def windows(image: Image.Image) -> int:
    return -(-image.width // 128) * -(-image.height // 128)


def test_modes_formats_and_alpha(upscale_server):
    rgba = Image.new("RGBA", (40, 30), (10, 200, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 30))
    with Client(upscale_server) as client:
        out = client.upscale(rgba)
        assert out.mode == "RGBA" and out.size == (80, 60)
        alpha = np.asarray(out)[..., 3]
        assert alpha[:, :36].max() < 40 and alpha[:, 44:].min() > 215
        gray = client.upscale(Image.new("L", (17, 9), 128))
        assert gray.mode == "L" and gray.size == (34, 18)
        assert client.upscale(rgba, format="jpeg").format == "JPEG"
    r = httpx.post(
        f"{upscale_server}/upscale",
        files={"file": png(rgba)},
        headers={"accept": "image/webp"},
    )
    assert r.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(r.content)).size == (80, 60)


@pytest.mark.parametrize(
    "params, body, status, code",
    [
        ({"model": "nope"}, None, 404, "unknown_model"),
        ({"model": "fashion-mnist-q3"}, None, 404, "unknown_model"),
        ({"format": "gif"}, None, 422, "invalid_request"),
        ({}, b"not an image", 415, "unsupported_image"),
        ({}, b"", 422, "empty_image"),
    ],
)
def test_bad_upscale_requests(upscale_server, params, body, status, code):
    body = png(Image.new("RGB", (8, 8))) if body is None else body
    r = httpx.post(f"{upscale_server}/upscale", params=params, content=body)
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_command_line_upscale_via_the_server(upscale_server, data_dir, tmp_path, model):
    source = data_dir / "set5" / "bird.png"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "latentwire.shared.cli",
            "upscale",
            str(source),
            "--server",
            upscale_server,
            "-o",
            str(tmp_path),
        ],
        check=True,
    )
    with Image.open(source) as image:
        expected = np.asarray(upscale_image(model, image.convert("RGB")))
    with Image.open(tmp_path / "bird_x2.png") as made:
        np.testing.assert_array_equal(np.asarray(made), expected)


def test_pixel_limit_queue_limit_and_timeout(photos):
    env = {
        "LATENTWIRE_MAX_UPSCALE_PIXELS": "70000",
        "LATENTWIRE_UPSCALE_QUEUE_CAPACITY": "1",
    }
    with running_server(env) as (url, _proc):
        r = httpx.post(f"{url}/upscale", content=png(Image.new("RGB", (300, 300))))
        assert r.status_code == 413 and "70000" in r.json()["error"]["message"]

        body = png(photos[3])  # 200x127: 2 tiles
        assert_a_full_queue_refuses(lambda: httpx.post(f"{url}/upscale", content=body, timeout=120))
        assert httpx.get(f"{url}/healthz").status_code == 200

    with running_server({"LATENTWIRE_REQUEST_TIMEOUT_S": "0.001"}) as (url, _proc):
        r = httpx.post(f"{url}/upscale", content=png(photos[2]), timeout=60)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert httpx.get(f"{url}/readyz").status_code == 200


def test_a_disconnected_client_is_dropped_from_the_queue(data_dir):
    with Image.open(data_dir / "kodak" / "kodim01.png") as image:
        body = png(image.convert("RGB").crop((0, 0, 500, 500)))  # 4x4 = 16 windows
    # A whole request in one step, so the first one holds the model while the second waits.
    with running_server({"LATENTWIRE_UPSCALE_MAX_TILES": "32"}) as (url, _proc):
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(httpx.post, f"{url}/upscale", content=body, timeout=300)
            time.sleep(0.5)  # the first request holds the model
            host = urlparse(url)
            with socket.create_connection((host.hostname, host.port)) as conn:
                conn.sendall(
                    b"POST /upscale HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                time.sleep(0.5)  # decoded and queued behind the first; now the client leaves
            assert first.result().status_code == 200
        deadline = time.monotonic() + 60
        while True:
            metrics = httpx.get(f"{url}/metrics").text
            gone = re.search(
                r'latentwire_errors_total\{code="client_disconnected"\} (\S+)', metrics
            )
            if gone and float(gone[1]) >= 1:
                break
            assert time.monotonic() < deadline, "the server never noticed the disconnect"
            time.sleep(0.2)
        computed = re.search(r'latentwire_batch_size_sum\{model="sr2x"\} (\S+)', metrics)
        assert float(computed[1]) == 16  # only the first request's windows ran
        assert httpx.get(f"{url}/readyz").status_code == 200
