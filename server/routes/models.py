from typing import Any

from fastapi import APIRouter, Request, Response

from latentwire.server.deps import registry_of
from latentwire.server.routes.common import etag_matches

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
    headers = {
        "ETag": f'"{digest}"',
        # The URL names no digest: an upgraded model is a new package at the same URL, so
        # a cached copy is revalidated every time (a 304 costs no body). Private: with API
        # keys on, no shared cache may hand the package to a caller without a key.
        "Cache-Control": "private, no-cache",
        "X-Latentwire-Digest": digest,
    }
    if registry.settings.keys:
        headers["Vary"] = "Authorization"
    if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(codec.decoder_bytes, media_type="application/msgpack", headers=headers)
