"""A corpus of awkward and malformed images against /encode and /upscale on the real server.

Each case gets its documented 4xx, or a 200 whose result equals what the same pixels,
sent as a plain 8-bit PNG, give; the server stays healthy throughout.
"""

import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import running_server

SIDE = 28  # the default codec's geometry, so a well-formed case encodes


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height over a few bytes of data (a bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo(data_dir) -> Image.Image:
    """A real 28x28 RGB crop of a BSD100 photo."""
    with Image.open(data_dir / "bsd100" / "101085.jpg") as image:
        return image.convert("RGB").crop((100, 100, 100 + SIDE, 100 + SIDE))


def with_exif(image: Image.Image, orientation: int, padding: int = 0) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    if padding:
        exif[0x010E] = "x" * padding  # ImageDescription: a big APP1 segment
    return jpeg(image, exif=exif.tobytes())


def cases(photo: Image.Image) -> dict[str, tuple[bytes, object, object]]:
    """name -> (body, what /encode does, what /upscale does).

    An expectation is (status, code) for an error, or the image the server must treat the
    body as (compared with the same pixels sent as a plain PNG).
    """
    gray = photo.convert("L")
    whole_png = png(photo)
    whole_jpeg = jpeg(photo)

    sixteen = np.asarray(gray, dtype=np.uint16) * 257 + 100  # full 16-bit range, not x256
    png16 = png(Image.fromarray(sixteen.astype(np.uint16)))
    gray_from_16 = Image.fromarray(((sixteen.astype(np.int64) + 128) // 257).astype(np.uint8))

    cmyk = photo.convert("CMYK")
    cmyk_jpeg = jpeg(cmyk)
    with Image.open(io.BytesIO(cmyk_jpeg)) as decoded:
        cmyk_as_rgb = decoded.convert("RGB")

    palette = photo.quantize(16)
    palette.info["transparency"] = 0
    palette_png = png(palette)
    with Image.open(io.BytesIO(palette_png)) as decoded:
        palette_as_rgba = decoded.convert("RGBA")

    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)

    flipped_jpeg = with_exif(photo, orientation=3)  # stored upside down: shown rotated 180
    with Image.open(io.BytesIO(flipped_jpeg)) as decoded:
        upright = decoded.convert("RGB").rotate(180)
    tall = photo.crop((0, 0, SIDE, 20))  # 28x20 stored, 20x28 shown (orientation 6)
    sideways_jpeg = with_exif(tall, orientation=6)
    with Image.open(io.BytesIO(sideways_jpeg)) as decoded:
        sideways_shown = decoded.convert("RGB").transpose(Image.Transpose.ROTATE_270)

    big_exif_jpeg = with_exif(photo, orientation=1, padding=60_000)
    with Image.open(io.BytesIO(big_exif_jpeg)) as decoded:
        big_exif_pixels = decoded.convert("RGB")

    ppm = io.BytesIO()  # Pillow reads PPM; the server takes only its listed formats
    gray.save(ppm, "PPM")

    float_tiff = io.BytesIO()
    Image.fromarray(np.asarray(gray, dtype=np.float32) / 255).save(float_tiff, "TIFF")

    return {
        "empty body": (b"", (422, "empty_image"), (422, "empty_image")),
        "text, not an image": (b"hello", (415, "unsupported_image"), (415, "unsupported_image")),
        "wrong magic": (
            b"\x00" * 8 + whole_png[8:],
            (415, "unsupported_image"),
            (415, "unsupported_image"),
        ),
        "PPM": (ppm.getvalue(), (415, "unsupported_image"), (415, "unsupported_image")),
        "truncated PNG": (whole_png[: len(whole_png) // 2], (422, "corrupt_image"), None),
        "truncated JPEG": (  # cut inside the entropy-coded data
            whole_jpeg[: whole_jpeg.index(b"\xff\xda") + 40],
            (422, "corrupt_image"),
            None,
        ),
        "100000x100000 header": (
            png_header_only(100_000, 100_000),
            (413, "image_too_large"),
            (413, "image_too_large"),
        ),
        # model=auto: sizes other than 28x28 grayscale go to the any-size photo codec
        "1x1": (png(Image.new("RGB", (1, 1), (200, 10, 10))), "as is", "as is"),
        "huge EXIF": (big_exif_jpeg, big_exif_pixels, big_exif_pixels),
        "animated GIF": (gif.getvalue(), (422, "unsupported_pixels"), (422, "unsupported_pixels")),
        "16-bit PNG": (png16, gray_from_16, gray_from_16),
        "CMYK JPEG": (cmyk_jpeg, cmyk_as_rgb, cmyk_as_rgb),
        "palette PNG with transparency": (palette_png, palette_as_rgba, palette_as_rgba),
        "EXIF orientation 3": (flipped_jpeg, upright, upright),
        "EXIF orientation 6": (sideways_jpeg, sideways_shown, sideways_shown),
        "float TIFF": (
            float_tiff.getvalue(),
            (422, "unsupported_pixels"),
            (422, "unsupported_pixels"),
        ),
    }


@pytest.fixture(scope="module")
def server():
    with running_server() as (url, _proc):
        yield url


NAMES = list(cases(Image.new("RGB", (SIDE, SIDE))))


@pytest.mark.parametrize("route", ["/encode", "/upscale"])
@pytest.mark.parametrize("name", NAMES)
def test_each_bad_image_gets_its_documented_answer(server, photo, route, name):
    body, on_encode, on_upscale = cases(photo)[name]
    expected = on_encode if route == "/encode" else on_upscale
    if expected is None:  # the same as the other route's answer
        expected = on_encode
    with httpx.Client(base_url=server, timeout=60) as http:
        got = http.post(route, content=body, headers={"content-type": "application/octet-stream"})
        if isinstance(expected, tuple):
            status, code = expected
            assert got.status_code == status, got.text
            assert got.json()["error"]["code"] == code
            assert got.json()["error"]["message"]
        else:
            assert got.status_code == 200, got.text
            shown = Image.open(io.BytesIO(body)) if expected == "as is" else expected
            reference = http.post(route, content=png(shown))
            assert reference.status_code == 200, reference.text
            if route == "/encode":
                assert got.content == reference.content
            else:
                out, ref = (
                    Image.open(io.BytesIO(got.content)),
                    Image.open(io.BytesIO(reference.content)),
                )
                assert out.mode == ref.mode and out.size == ref.size
                assert out.size == (2 * shown.width, 2 * shown.height)
                assert np.array_equal(np.asarray(out), np.asarray(ref))
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_the_server_still_serves_after_the_corpus(server, photo):
    corpus = cases(photo)
    with httpx.Client(base_url=server, timeout=60) as http:
        for body, _, _ in corpus.values():
            for route in ("/encode", "/upscale"):
                assert http.post(route, content=body).status_code < 500
        assert http.post("/encode", content=png(photo.convert("L"))).status_code == 200
        metrics = http.get("/metrics").text
    assert 'status="5' not in metrics
