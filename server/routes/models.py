import asyncio
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, Response

from latentwire.server.deps import registry_of
from latentwire.server.routes.common import accepts_gzip, etag_matches
from latentwire.shared.decoder_package import gzip_package

router = APIRouter(tags=["models"])


@router.get("/models", summary="The models this server hosts (only its tasks')")
async def list_models(request: Request) -> list[dict[str, Any]]:
    return [hosted.describe() for hosted in registry_of(request).hosted.values()]


@router.get(
    "/models/{model_id}/decoder",
    summary="The decoder package a client needs (ONNX synthesis + symbol tables)",
    response_class=Response,
    responses={200: {"content": {"application/msgpack": {}}}, 304: {"description": "unchanged"}},
)
async def get_decoder(model_id: str, request: Request) -> Response:
    registry = registry_of(request)
    codec = registry.codec(model_id).codec
    digest = f"{codec.package.digest:04x}"
    gzipped = accepts_gzip(request)
    headers = {
        # The digest is of the package itself; its gzipped form is another representation of
        # it, hence a weak tag (as nginx gives), which still revalidates either form.
        "ETag": f'W/"{digest}"' if gzipped else f'"{digest}"',
        # The URL names no digest: an upgraded model is a new package at the same URL, so
        # a cached copy is revalidated every time (a 304 costs no body). Private: with API
        # keys on, no shared cache may hand the package to a caller without a key.
        "Cache-Control": "private, no-cache",
        "Vary": "Accept-Encoding" + (", Authorization" if registry.settings.keys else ""),
        "X-Latentwire-Digest": digest,
    }
    if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    if gzipped:  # 30% smaller for a photo codec, 4-5x for a 28x28 one's tables
        headers["Content-Encoding"] = "gzip"
        body = await asyncio.to_thread(_gzipped, codec.decoder_bytes)  # once: off the loop
        return Response(body, media_type="application/msgpack", headers=headers)
    return Response(codec.decoder_bytes, media_type="application/msgpack", headers=headers)


@lru_cache(maxsize=32)  # keyed by the package bytes (their hash is kept with them)
def _gzipped(package: bytes) -> bytes:
    """The package as its model folder stores it: the same bytes, compressed once."""
    return gzip_package(package)
