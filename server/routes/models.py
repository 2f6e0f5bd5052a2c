from typing import Any

from fastapi import APIRouter, Request, Response

from latentwire.server.deps import registry_of

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
    codec = registry_of(request).codec(model_id).codec
    digest = f"{codec.package.digest:04x}"
    headers = {
        "ETag": f'"{digest}"',
        "Cache-Control": "public, max-age=31536000, immutable",  # a digest never changes
        "X-Latentwire-Digest": digest,
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(codec.decoder_bytes, media_type="application/msgpack", headers=headers)
