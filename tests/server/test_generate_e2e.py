"""POST /generate on the real server (uvicorn, loopback) with the shipped generators."""

import io
import subprocess
import sys

import httpx
import msgpack
import numpy as np
import pytest
from PIL import Image

from latentwire.client import Client
from tests.server.conftest import assert_a_full_queue_refuses, running_server

CLI = [sys.executable, "-m", "latentwire.shared.cli"]


@pytest.fixture(scope="module")
def server():
    with running_server() as (url, _proc):
        yield url


def test_a_grid_and_an_array_for_one_seed(server):
    with httpx.Client(base_url=server, timeout=60) as http:
        grid = http.post("/generate", params={"n": 16, "seed": 7})
        assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
        assert grid.headers["x-latentwire-model"] == "fashion-mnist-dcgan"
        assert Image.open(io.BytesIO(grid.content)).size == (4 * 30 + 2, 4 * 30 + 2)
        again = http.post("/generate", params={"n": 16, "seed": 7})
        assert again.content == grid.content  # deterministic for a seed
        other = http.post("/generate", params={"n": 16, "seed": 8})
        assert other.content != grid.content

        array = http.post("/generate", params={"n": 5, "seed": 7, "format": "msgpack"})
        images = [Image.open(io.BytesIO(b)) for b in msgpack.unpackb(array.content)]
        assert len(images) == 5 and all(im.size == (28, 28) and im.mode == "L" for im in images)

        gan = http.post("/generate", params={"model": "fashion-mnist-gan", "n": 3, "columns": 3})
        assert Image.open(io.BytesIO(gan.content)).size == (3 * 30 + 2, 30 + 2)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"n": 100000}, 422, "too_many_images"),
        ({"n": 0}, 422, "invalid_request"),
        ({"seed": -1}, 422, "invalid_request"),
        ({"format": "gif"}, 422, "invalid_request"),
        ({"model": "nope"}, 404, "unknown_model"),
        ({"model": "fashion-mnist-q3"}, 404, "unknown_model"),  # a codec is no generator
    ],
)
def test_bad_generate_requests(server, params, status, code):
    response = httpx.post(f"{server}/generate", params=params)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_client_and_command_line_agree_with_local_sampling(server, tmp_path):
    with Client(server) as client:
        images = client.generate(n=9, seed=11)
        assert len(images) == 9
        described = {m["id"]: m for m in client.models()}
        assert described["fashion-mnist-dcgan"]["task"] == "generate"
        assert described["fashion-mnist-dcgan"]["output"] == {
            "channels": 1,
            "height": 28,
            "width": 28,
        }
    remote, local = tmp_path / "remote.png", tmp_path / "local.png"
    common = ["sample", "-n", "9", "--seed", "11", "--model", "fashion-mnist-dcgan"]
    subprocess.run([*CLI, *common, "-o", str(remote), "--server", server], check=True)
    subprocess.run([*CLI, *common, "-o", str(local)], check=True)
    a, b = np.asarray(Image.open(remote)), np.asarray(Image.open(local))
    assert a.shape == b.shape == (3 * 30 + 2, 3 * 30 + 2)
    # Same noise, same weights; thread counts may round a pixel the other way, no more.
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    first = np.asarray(images[0])
    assert np.abs(first.astype(int) - a[2:30, 2:30].astype(int)).max() <= 1


def test_a_full_generate_queue_answers_503_at_once():
    with running_server({"LATENTWIRE_GENERATE_QUEUE_CAPACITY": "1"}) as (url, _proc):
        assert_a_full_queue_refuses(
            lambda: httpx.post(f"{url}/generate", params={"n": 256}, timeout=120)
        )
