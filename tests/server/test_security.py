"""API keys on every route but health, keys kept out of logs, model ids that cannot name
files, and nothing a request can influence ever unpickled."""

import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from latentwire.client import AuthenticationError, Client
from tests.server.conftest import running_server
from tests.server.test_bad_input import png

KEY = "k3y-for-tests-0123456789"
WRONG = "wrong-key-0000000000"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keyed_server(tiny_codec):
    env = {
        "LATENTWIRE_MODEL_DIR": str(tiny_codec),
        "LATENTWIRE_API_KEYS": f"other-key-000000000,{KEY}",
        "LATENTWIRE_ACCESS_LOG": "true",  # the log a key must never reach
    }
    with running_server(env) as (url, proc):
        yield url, proc
    assert KEY.encode() not in proc.log and WRONG.encode() not in proc.log
    assert b"POST /encode" in proc.log  # the access log was on, and still held no key


def routes(url: str) -> list[tuple[str, str]]:
    """(method, path) of every route in the schema, plus the ones left out of it."""
    schema = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    found = [
        (method.upper(), path.replace("{model_id}", "tiny-codec-q4"))
        for path, item in schema["paths"].items()
        for method in item
    ]
    return [*found, ("GET", "/metrics"), ("GET", "/openapi.json")]


def test_every_route_but_health_needs_a_key(keyed_server):
    url, _ = keyed_server
    checked = routes(url)
    assert {p for _, p in checked} >= {"/encode", "/encode/batch", "/upscale", "/models"}
    for method, path in checked:
        if path in ("/healthz", "/readyz"):
            assert httpx.request(method, f"{url}{path}").status_code == 200
            continue
        for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": KEY}):
            response = httpx.request(method, f"{url}{path}", headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    # The interactive docs cannot send a key, so they are off.
    assert httpx.get(f"{url}/docs").status_code in (401, 404)


def test_the_client_with_and_without_a_key(keyed_server):
    url, _ = keyed_server
    image = Image.new("L", (28, 28), 128)
    with pytest.raises(AuthenticationError):
        Client(url, api_key=WRONG).encode(image)
    with Client(url, api_key=KEY) as client:
        assert client.models()
        assert client.decode(client.encode(image)).size == (28, 28)
        assert client.upscale(image).size == (56, 56)


@pytest.mark.parametrize(
    "path",
    [
        "/encode?model=../../../../etc/passwd",
        "/encode?model=/etc/passwd",
        "/upscale?model=../sr2x",
        "/upscale?model=%2E%2E%2Fzoo%2Fsr2x",
    ],
)
def test_model_ids_never_name_files(keyed_server, path):
    url, _ = keyed_server
    auth = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{url}{path}", content=png(Image.new("L", (28, 28))), headers=auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_model"


def test_a_key_protected_decoder_package_is_never_in_a_shared_cache(keyed_server):
    url, _ = keyed_server
    auth = {"Authorization": f"Bearer {KEY}"}
    response = httpx.get(f"{url}/models/tiny-codec-q4/decoder", headers=auth)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["vary"] == "Accept-Encoding, Authorization"
    again = {**auth, "If-None-Match": response.headers["etag"]}
    assert httpx.get(f"{url}/models/tiny-codec-q4/decoder", headers=again).status_code == 304


def test_decoder_route_never_names_files(keyed_server):
    url, _ = keyed_server
    auth = {"Authorization": f"Bearer {KEY}"}
    for model_id in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "tiny-codec-q4%00"):
        response = httpx.get(f"{url}/models/{model_id}/decoder", headers=auth)
        assert response.status_code == 404, model_id


def test_nothing_a_request_reaches_is_unpickled():
    """Packages are safetensors, ONNX, msgpack and JSON; only training's own checkpoints
    and weight files go through torch.load, and always with weights_only=True."""
    for folder in ("server", "shared", "client", "training"):
        for source in (REPO / folder).rglob("*.py"):
            text = source.read_text()
            assert not re.search(
                r"^\s*(import|from) (pickle|dill|joblib|cloudpickle)\b", text, re.M
            )
            assert "allow_pickle=True" not in text, source
            for call in re.findall(r"torch\.load\([^)]*\)", text):
                assert "weights_only=True" in call, (source, call)
            if folder != "training":
                assert "torch.load(" not in text, source
