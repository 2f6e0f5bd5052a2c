"""The real server on loopback, driven by the real client over HTTP."""

import asyncio
import functools
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from latentwire.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    IRError,
    ServerError,
    decode_batch,
)
from latentwire.shared.decoder_package import digest_of, gzip_package
from latentwire.shared.package import list_packages, read_manifest
from latentwire.shared.wire import IR, parse
from latentwire.training.data import load_datasets
from latentwire.training.metrics import psnr
from tests.conftest import BIN
from tests.server.conftest import free_port, running_server

TINY = "tiny-codec-q4"
SHIPPED = [
    m
    for m in map(read_manifest, list_packages())
    if m.task == "codec" and m.dataset != "photos"  # the small codecs
]


@pytest.fixture(scope="module")
def images():
    _, test_set, _ = load_datasets("fashion-mnist")
    return [test_set.images[i, 0].numpy() for i in range(300)]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_health_and_models(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/readyz").json()["status"] == "ready"
    with Client(server) as client:
        models = {m["id"]: m for m in client.models()}
    tiny = models[TINY]
    assert tiny["family"] == "factorized" and tiny["dataset"] == "fashion-mnist"
    assert tiny["quality"] == 4 and tiny["input"] == {"channels": 1, "height": 28, "width": 28}
    assert len(tiny["digest"]) == 4 and "psnr_db" in tiny["metrics"]


def test_encode_then_decode_locally_downloads_the_decoder_once(server, images, tmp_path):
    with Client(server, cache_dir=tmp_path) as client:
        response = httpx.post(
            f"{server}/encode", params={"model": TINY}, files={"file": png(images[0])}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/msgpack"
        assert response.headers["x-latentwire-model"] == TINY
        assert int(response.headers["x-latentwire-ir-bytes"]) == len(response.content)
        ir = client.encode(images[0], model=TINY)
        assert ir == response.content  # deterministic
        image = client.decode(ir)
    assert image.size == (28, 28)
    assert psnr(images[0], np.asarray(image)) > 10
    cached = list(tmp_path.glob("tiny-codec-q4-*.msgpack"))
    assert len(cached) == 1 and cached[0].name.endswith(f"{parse(ir).digest:04x}.msgpack")


def test_effort_gives_an_ir_the_same_decoder_reads(server, images):
    with Client(server) as client:
        plain = client.encode(images[1], model="fashion-mnist-q3")
        refined = client.encode(images[1], model="fashion-mnist-q3", effort=1)
        assert client.encode_many(images[1:3], model="fashion-mnist-q3", effort=1)[0] == refined
        assert parse(refined).digest == parse(plain).digest
        assert client.decode(refined).size == (28, 28)
    r = httpx.post(f"{server}/encode", params={"effort": 4}, content=png(images[1]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_batch_equals_single_requests_and_raw_bodies(server, images):
    with Client(server) as client:
        batch = client.encode_many(images[:20], model=TINY)
        singles = [client.encode(im, model=TINY) for im in images[:5]]
    assert batch[:5] == singles
    raw = httpx.post(
        f"{server}/encode",
        params={"model": TINY},
        content=png(images[3]),
        headers={"content-type": "image/png"},
    )
    assert raw.status_code == 200 and raw.content == batch[3]


@pytest.mark.parametrize("manifest", SHIPPED, ids=lambda m: m.id)
def test_shipped_codecs_meet_their_published_figures_over_http(server, manifest):
    _, test_set, _ = load_datasets(manifest.dataset)
    originals = [test_set.images[i, 0].numpy() for i in range(1000)]
    with Client(server) as client:
        irs = []
        for start in range(0, len(originals), 250):
            irs += client.encode_many(originals[start : start + 250], model=manifest.id)
        decoded = decode_batch(irs, client.decoders)
    mean_psnr = np.mean([psnr(a, b) for a, b in zip(originals, decoded, strict=True)])
    # 1,000 of the 10,000 test images the manifest was measured on.
    assert mean_psnr == pytest.approx(manifest.metrics["psnr_db"], abs=0.5)
    assert np.mean([len(ir) for ir in irs]) == pytest.approx(manifest.metrics["ir_bytes"], rel=0.05)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and then stops after a few bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 9))


@pytest.mark.parametrize(
    ("params", "body", "status", "code"),
    [
        ({"model": TINY}, b"this is not an image", 415, "unsupported_image"),
        ({"model": TINY}, png_header(100000, 100000), 413, "image_too_large"),
        ({"model": TINY}, png_header(5000, 5000), 413, "image_too_large"),
        ({"model": TINY}, png_header(28, 28), 422, "corrupt_image"),
        ({"model": TINY}, png(np.zeros((480, 640), np.uint8)), 422, "wrong_geometry"),
        ({"model": TINY}, b"", 422, "empty_image"),
        ({"model": "no-such-codec"}, png(np.zeros((28, 28), np.uint8)), 404, "unknown_model"),
        (
            {"model": "tiny-codec", "quality": 9},
            png(np.zeros((28, 28), np.uint8)),
            422,
            "unknown_quality",
        ),
        (
            {"model": TINY, "quality": "high"},
            png(np.zeros((28, 28), np.uint8)),
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_requests_get_json_errors(server, params, body, status, code):
    response = httpx.post(f"{server}/encode", params=params, files={"file": body})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_body_limit_and_unknown_routes(server):
    huge = b"\0" * (16 * 2**20 + 1)
    response = httpx.post(f"{server}/encode", content=huge, headers={"content-type": "image/png"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    response = httpx.get(f"{server}/models/nope/decoder")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_model"
    assert httpx.get(f"{server}/nowhere").json()["error"]["code"] == "not_found"


def test_decoder_etag_and_a_wrong_digest_is_refused(server, images, tmp_path):
    first = httpx.get(f"{server}/models/{TINY}/decoder", headers={"accept-encoding": "identity"})
    assert first.status_code == 200 and "content-encoding" not in first.headers
    # The URL names no digest: revalidated on every use, never kept as immutable.
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["vary"] == "Accept-Encoding"  # no API keys here
    digest = first.headers["x-latentwire-digest"]
    assert first.headers["etag"] == f'"{digest}"' == f'"{digest_of(first.content):04x}"'
    for tag in (first.headers["etag"], f'"0000", W/{first.headers["etag"]}'):
        again = httpx.get(f"{server}/models/{TINY}/decoder", headers={"if-none-match": tag})
        assert again.status_code == 304
    # What httpx, browsers and Node ask for by default: the package gzipped, under a weak
    # tag; each form revalidates the other.
    with httpx.stream("GET", f"{server}/models/{TINY}/decoder") as zipped:
        wire = b"".join(zipped.iter_raw())
    assert (
        zipped.headers["content-encoding"] == "gzip" and zipped.headers["etag"] == f'W/"{digest}"'
    )
    assert wire == gzip_package(first.content) and len(wire) < len(first.content) / 2
    raw = httpx.get(
        f"{server}/models/{TINY}/decoder", headers={"accept-encoding": "br, gzip;q=0, *"}
    )
    assert "content-encoding" not in raw.headers  # gzip refused by name, whatever "*" says
    again = httpx.get(
        f"{server}/models/{TINY}/decoder", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.headers["etag"] == f'W/"{digest}"'
    with Client(server, cache_dir=tmp_path) as client:
        ir = parse(client.encode(images[0], model=TINY))
        forged = IR(ir.model, ir.digest ^ 0xFFFF, ir.payload).to_bytes()
        with pytest.raises(IRError, match="refused"):
            client.decode(forged)
    assert not list(tmp_path.glob("*.msgpack"))  # nothing was stored


def test_concurrent_requests_are_batched(server, images):
    async def burst():
        async with AsyncClient(server) as client:
            return await asyncio.gather(*(client.encode(im, model=TINY) for im in images[:64]))

    irs = asyncio.run(burst())
    with Client(server) as client:
        assert irs[:3] == [client.encode(im, model=TINY) for im in images[:3]]
    metrics = httpx.get(f"{server}/metrics").text
    sizes = [
        line
        for line in metrics.splitlines()
        if line.startswith("latentwire_batch_size_bucket") and TINY in line
    ]
    ones = next(float(s.split()[-1]) for s in sizes if 'le="1.0"' in s)
    total = next(float(s.split()[-1]) for s in sizes if 'le="+Inf"' in s)
    assert total > ones, "no batch held more than one image"
    assert "latentwire_requests_total" in metrics and "latentwire_queue_depth" in metrics


def test_a_full_queue_answers_503_with_retry_after(tiny_codec, images):
    env = {
        "LATENTWIRE_MODEL_DIR": str(tiny_codec),
        "LATENTWIRE_QUEUE_CAPACITY": "2",
        "LATENTWIRE_MAX_BATCH": "1",
    }
    with running_server(env) as (url, _):

        async def flood():
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                requests = [
                    http.post("/encode", params={"model": TINY}, files={"file": png(im)})
                    for im in images[:200]
                ]
                return await asyncio.gather(*requests)

        responses = asyncio.run(flood())
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "overloaded"
        # The client's retries ride it out.
        with Client(url) as client:
            assert client.encode(images[0], model=TINY)
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_server_errors_are_typed():
    error = ServerError(418, "teapot", "short and stout")
    assert error.status == 418 and "teapot" in str(error)


def test_schemathesis_finds_no_server_errors(server):
    """Property-based requests generated from the app's own OpenAPI schema: no 5xx."""
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{server}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",
            "--no-color",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout


def test_command_line_encode_decode_models(server, images, tmp_path):
    sources = []
    for i in range(3):
        path = tmp_path / f"item{i}.png"
        path.write_bytes(png(images[i]))
        sources.append(str(path))
    cli = [sys.executable, "-m", "latentwire.shared.cli"]
    env = {**os.environ, "LATENTWIRE_CACHE": str(tmp_path / "cache")}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, check=True)
    run(
        [*cli, "encode", *sources, "-o", str(tmp_path / "irs"), "--server", server, "--model", TINY]
    )
    irs = sorted((tmp_path / "irs").glob("*.lw"))
    assert [p.stem for p in irs] == ["item0", "item1", "item2"]
    run([*cli, "decode", *map(str, irs), "-o", str(tmp_path / "out"), "--server", server])
    with Client(server, cache_dir=tmp_path / "c2") as client:
        for i, ir in enumerate(irs):
            decoded = np.asarray(Image.open(tmp_path / "out" / f"item{i}.png"))
            assert np.array_equal(decoded, client.decode_array(ir.read_bytes()))
    listed = json.loads(run([*cli, "models", "--server", server]).stdout)
    assert TINY in {m["id"] for m in listed}
    # Without the server, a model this machine has no decoder for is a clear error.
    failed = subprocess.run(
        [*cli, "decode", str(irs[0]), "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env={**env, "LATENTWIRE_CACHE": str(tmp_path / "empty")},
    )
    assert failed.returncode == 1 and "no decoder" in failed.stderr


def test_unreachable_server_is_a_connection_error_after_retries():
    port = free_port()  # nothing listens there
    began = time.monotonic()
    with pytest.raises(ConnectionFailed), Client(f"http://127.0.0.1:{port}", retries=2) as c:
        c.models()
    assert time.monotonic() - began > 0.2  # it backed off between tries
