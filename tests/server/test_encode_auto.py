"""model=auto on the real server: small grayscale images to the small codec, anything else
to the any-size photo codec; IRs always name their model, so decoding never guesses."""

import io

import httpx
import msgpack
import pytest
from PIL import Image

from latentwire.client import Client
from tests.server.conftest import running_server


@pytest.fixture(scope="module")
def server():
    with running_server({}) as (url, _proc):  # the shipped codecs only
        yield url


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(data_dir):
    with Image.open(data_dir / "kodak" / "kodim05.png") as photo:
        photo = photo.convert("RGB")
    return {
        "small gray": photo.convert("L").resize((28, 28)),
        "photo": photo.crop((0, 0, 101, 61)),
        "gray photo": photo.convert("L").crop((0, 0, 45, 70)),
        "small rgb": photo.resize((28, 28)),
    }


@pytest.mark.parametrize(
    ("name", "model", "size"),
    [
        ("small gray", "fashion-mnist-q3", (28, 28)),
        ("photo", "photo-q3", (101, 61)),
        ("gray photo", "photo-q3", (45, 70)),
        ("small rgb", "photo-q3", (28, 28)),
    ],
)
def test_auto_picks_by_the_image_and_the_ir_decodes_to_its_size(
    server, images, tmp_path, name, model, size
):
    response = httpx.post(f"{server}/encode", content=png(images[name]))
    assert response.status_code == 200, response.text
    assert response.headers["x-latentwire-model"] == model
    with Client(server, cache_dir=tmp_path) as client:
        decoded = client.decode(response.content)
    assert decoded.size == size


def test_a_batch_may_mix_codecs(server, images, tmp_path):
    files = [("files", (n, png(im))) for n, im in images.items()]
    response = httpx.post(f"{server}/encode/batch", files=files)
    assert response.status_code == 200, response.text
    assert response.headers["x-latentwire-model"] == "fashion-mnist-q3,photo-q3"
    irs = msgpack.unpackb(response.content)
    with Client(server, cache_dir=tmp_path) as client:
        sizes = [client.decode(ir).size for ir in irs]
    assert sizes == [im.size for im in images.values()]


def test_a_named_codec_still_refuses_what_it_cannot_take(server, images):
    response = httpx.post(
        f"{server}/encode", params={"model": "fashion-mnist"}, content=png(images["photo"])
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "wrong_geometry"


def test_models_lists_the_photo_codec_as_any_size(server):
    described = {m["id"]: m for m in httpx.get(f"{server}/models").json()}
    assert described["photo-q3"]["input"] == {"channels": 3, "height": None, "width": None}
    assert described["photo-q3"]["metrics"]["test_set"] == "kodak"
