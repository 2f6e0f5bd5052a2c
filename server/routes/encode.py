from typing import Annotated

import msgpack
from fastapi import APIRouter, Depends, Query, Request, Response

from latentwire.server.deps import RegistryDep, SettingsDep
from latentwire.server.errors import ApiError
from latentwire.server.images import open_image, to_model_input
from latentwire.server.registry import HostedCodec
from latentwire.server.routes.common import image_body, read_uploads, run_batched

router = APIRouter(tags=["encode"])

_MSGPACK = {200: {"content": {"application/msgpack": {}}, "description": "the IR"}}

ModelQuery = Annotated[
    str | None, Query(max_length=128, description="codec name (e.g. fashion-mnist) or model id")
]
QualityQuery = Annotated[int | None, Query(ge=1, le=100, description="quality level, 1 = smallest")]


async def get_codec(
    registry: RegistryDep, model: ModelQuery = None, quality: QualityQuery = None
) -> HostedCodec:
    return registry.resolve(model, quality)


CodecDep = Annotated[HostedCodec, Depends(get_codec)]


def _headers(codec: HostedCodec, size: int) -> dict[str, str]:
    return {
        "X-Latentwire-Model": codec.manifest.id,
        "X-Latentwire-Quality": str(codec.manifest.quality),
        "X-Latentwire-IR-Bytes": str(size),
    }


@router.post(
    "/encode",
    summary="Encode one image into an IR",
    response_class=Response,
    responses=_MSGPACK,
    openapi_extra=image_body("file"),
)
async def encode(request: Request, codec: CodecDep, settings: SettingsDep) -> Response:
    data = (await read_uploads(request, "file", 1))[0]
    pixels = to_model_input(open_image(data, settings.max_pixels), *codec.shape)
    (ir,) = await run_batched(codec.batcher, [pixels], request, settings.request_timeout_s)
    return Response(ir, media_type="application/msgpack", headers=_headers(codec, len(ir)))


@router.post(
    "/encode/batch",
    summary="Encode several images (multipart fields `files`); a msgpack array of IRs",
    response_class=Response,
    responses=_MSGPACK,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            }
                        },
                        "required": ["files"],
                    }
                }
            },
            "required": True,
        }
    },
)
async def encode_batch(request: Request, codec: CodecDep, settings: SettingsDep) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "multipart_required", "send the images as multipart fields 'files'")
    images = await read_uploads(request, "files", settings.max_images_per_request)
    if len(images) > settings.max_images_per_request:
        raise ApiError(
            413, "too_many_images", f"at most {settings.max_images_per_request} images a request"
        )
    # Check every image before queueing any: a bad one fails the request and costs nothing.
    pixels = [to_model_input(open_image(d, settings.max_pixels), *codec.shape) for d in images]
    irs = await run_batched(codec.batcher, pixels, request, settings.request_timeout_s)
    body = msgpack.packb(irs, use_bin_type=True)
    return Response(body, media_type="application/msgpack", headers=_headers(codec, len(body)))
