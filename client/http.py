"""Talk to a latentwire server: encode there, decode here.

``Client`` and ``AsyncClient`` share one behaviour: an API key sent as a bearer token;
retries with exponential backoff and jitter on connection errors, 502 (a proxy in front
lost its replica) and 503 (honouring Retry-After), never on other 4xx/5xx answers; one
exception hierarchy for what the server says. Decoding is local: decoders resolve from
the shipped models, then the cache folder, then ``GET /models/{id}/decoder`` (kept only
when its digest matches the IR's).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

import httpx
import msgpack
import numpy as np
from PIL import Image

from latentwire.client.decoding import DecoderStore, decode_batch
from latentwire.shared.images import open_image
from latentwire.shared.wire import IRError, parse

MAX_RESPONSE_PIXELS = 1 << 26  # 8192x8192: past any upscale a server makes by default
ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]  # noqa: UP007
_RAW_IMAGE = {"content-type": "application/octet-stream"}  # the server reads the format itself


class LatentwireError(Exception):
    """Base of every error the client raises about the server or the network."""


class ConnectionFailed(LatentwireError):
    """The server could not be reached, even after the retries."""


class ServerError(LatentwireError):
    """The server answered with an error: ``status``, a stable ``code`` and a ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class AuthenticationError(ServerError):
    """401: no API key, or a wrong one."""


class Overloaded(ServerError):
    """503: the server stayed busy through every retry."""


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("LATENTWIRE_CACHE", base / "latentwire")) / "decoders"


def image_bytes(image: ImageInput) -> bytes:
    """An image as bytes the server can read: files and bytes as they are, arrays as PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()
    raise TypeError(f"cannot send a {type(image).__name__} as an image")


def _error(response: httpx.Response) -> ServerError:
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    kind = {401: AuthenticationError, 503: Overloaded}.get(response.status_code, ServerError)
    return kind(response.status_code, code, message)


# A proxy's 502 (its replica went away mid-request) and the server's 503 (queue full) pass;
# every request latentwire serves gives the same answer when sent again.
RETRIED_STATUSES = (502, 503)


def _backoff(attempt: int, response: httpx.Response | None, base: float) -> float:
    retry_after = response.headers.get("retry-after") if response is not None else None
    if retry_after and retry_after.isdigit():
        return float(retry_after) + random.uniform(0, base)
    return base * 2**attempt * random.uniform(0.5, 1.5)


class _Base:
    """What the blocking and the asyncio client share: everything but the waiting."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        retries: int,
        backoff: float,
        cache_dir: str | os.PathLike | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retries, self.backoff = retries, backoff
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

    def _retry_delay(
        self, attempt: int, response: httpx.Response | None, error: Exception | None
    ) -> float | None:
        """Seconds to wait before the next try, or None when this answer is final."""
        retryable = error is not None or response.status_code in RETRIED_STATUSES
        if not retryable or attempt >= self.retries:
            return None
        return _backoff(attempt, response, self.backoff)

    def _final(
        self, path: str, response: httpx.Response | None, error: Exception | None
    ) -> httpx.Response:
        if error is not None:
            raise ConnectionFailed(f"{self.base_url}{path}: {error}") from error
        if response.status_code >= 400:
            raise _error(response)
        return response

    @staticmethod
    def _encode_args(
        images: list[ImageInput],
        model: str | None,
        quality: int | None,
        effort: int,
        batch: bool,
    ) -> dict[str, Any]:
        """/encode takes its one image as the raw body (no multipart parsing on the server);
        /encode/batch takes multipart fields ``files``."""
        given = {"model": model, "quality": quality, "effort": effort or None}
        params = {k: v for k, v in given.items() if v is not None}
        if not batch:
            (image,) = images
            return {"content": image_bytes(image), "params": params, "headers": _RAW_IMAGE}
        files = [("files", (f"image{i}", image_bytes(im))) for i, im in enumerate(images)]
        return {"files": files, "params": params}

    @staticmethod
    def _upscale_args(image: ImageInput, model: str | None, format: str) -> dict[str, Any]:
        params = {"format": format, **({"model": model} if model else {})}
        return {"content": image_bytes(image), "params": params, "headers": _RAW_IMAGE}


def _open_image(data: bytes) -> Image.Image:
    """An image the server sent, bounded like any other image from outside."""
    return open_image(data, MAX_RESPONSE_PIXELS)


def _generate_params(n: int, seed: int, model: str | None) -> dict[str, Any]:
    return {"n": n, "seed": seed, "format": "msgpack", **({"model": model} if model else {})}


def _images_from(response: httpx.Response) -> list[Image.Image]:
    """The images of a msgpack array of PNGs."""
    return [_open_image(data) for data in msgpack.unpackb(response.content)]


class Client(_Base):
    """A blocking client. ``with Client("http://127.0.0.1:8000") as c: ir = c.encode("a.png")``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.2,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retries, backoff, cache_dir)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=self.headers)
        self.decoders = DecoderStore(cache_dir=self.cache_dir, fetch=self._fetch_decoder)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in itertools.count():
            response, error = None, None
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                error = e
            delay = self._retry_delay(attempt, response, error)
            if delay is None:
                return self._final(path, response, error)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _fetch_decoder(self, model: str | int) -> bytes:
        if isinstance(model, int):  # a deployment's model code: the server says whose
            hosted = self._request("GET", "/models").json()
            ids = [m["id"] for m in hosted if m.get("code") == model]
            if not ids:
                raise IRError(f"the server hosts no model with code {model}")
            model = ids[0]
        return self._request("GET", f"/models/{model}/decoder").content

    def encode(
        self,
        image: ImageInput,
        model: str | None = None,
        quality: int | None = None,
        effort: int = 0,
    ) -> bytes:
        """The IR of one image; ``effort`` above 0 asks for fewer bytes at the same quality
        for more of the server's time (the same decoder)."""
        args = self._encode_args([image], model, quality, effort, batch=False)
        return self._request("POST", "/encode", **args).content

    def encode_many(
        self,
        images: Iterable[ImageInput],
        model: str | None = None,
        quality: int | None = None,
        effort: int = 0,
    ) -> list[bytes]:
        """One IR per image, in one request."""
        args = self._encode_args(list(images), model, quality, effort, batch=True)
        return list(msgpack.unpackb(self._request("POST", "/encode/batch", **args).content))

    def decode(self, ir: bytes) -> Image.Image:
        """Decode locally; the decoder is downloaded once if this client does not have it."""
        return Image.fromarray(self.decode_array(ir))

    def decode_array(self, ir: bytes) -> np.ndarray:
        return decode_batch([ir], self.decoders)[0]

    def models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/models").json()

    def upscale(
        self, image: ImageInput, model: str | None = None, format: str = "png"
    ) -> Image.Image:
        """The server's 2x upscale of an image (same mode family: L, RGB, with alpha kept)."""
        response = self._request("POST", "/upscale", **self._upscale_args(image, model, format))
        return _open_image(response.content)

    def generate(self, n: int = 16, seed: int = 0, model: str | None = None) -> list[Image.Image]:
        """``n`` images from the server's generator; the same seed gives the same images."""
        response = self._request("POST", "/generate", params=_generate_params(n, seed, model))
        return _images_from(response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The same API for asyncio: ``await client.encode(image)``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.2,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retries, backoff, cache_dir)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=self.headers
        )
        self.decoders = DecoderStore(cache_dir=self.cache_dir)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in itertools.count():
            response, error = None, None
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                error = e
            delay = self._retry_delay(attempt, response, error)
            if delay is None:
                return self._final(path, response, error)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def encode(
        self,
        image: ImageInput,
        model: str | None = None,
        quality: int | None = None,
        effort: int = 0,
    ) -> bytes:
        args = self._encode_args([image], model, quality, effort, batch=False)
        return (await self._request("POST", "/encode", **args)).content

    async def encode_many(
        self,
        images: Iterable[ImageInput],
        model: str | None = None,
        quality: int | None = None,
        effort: int = 0,
    ) -> list[bytes]:
        args = self._encode_args(list(images), model, quality, effort, batch=True)
        return list(msgpack.unpackb((await self._request("POST", "/encode/batch", **args)).content))

    async def decode(self, ir: bytes) -> Image.Image:
        return Image.fromarray(await self.decode_array(ir))

    async def decode_array(self, ir: bytes) -> np.ndarray:
        parsed = parse(ir)
        if not self.decoders.has(parsed.model, parsed.digest):
            response = await self._request("GET", f"/models/{parsed.model}/decoder")
            self.decoders.add(parsed.model, parsed.digest, response.content)
        return decode_batch([ir], self.decoders)[0]

    async def models(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/models")).json()

    async def upscale(
        self, image: ImageInput, model: str | None = None, format: str = "png"
    ) -> Image.Image:
        args = self._upscale_args(image, model, format)
        response = await self._request("POST", "/upscale", **args)
        return _open_image(response.content)

    async def generate(
        self, n: int = 16, seed: int = 0, model: str | None = None
    ) -> list[Image.Image]:
        params = _generate_params(n, seed, model)
        return _images_from(await self._request("POST", "/generate", params=params))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
