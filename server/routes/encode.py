from typing import Annotated

import msgpack
from fastapi import APIRouter, Query, Request, Response

from latentwire.server.deps import registry_of
from latentwire.server.errors import ApiError
from latentwire.server.hosted import HostedCodec
from latentwire.server.routes.common import image_body, read_uploads, run_batched
from latentwire.shared.images import model_input, open_image

router = APIRouter(tags=["encode"])

_MSGPACK = {200: {"content": {"application/msgpack": {}}, "description": "the IR"}}

ModelQuery = Annotated[
    str | None,
    Query(
        max_length=128,
        description="auto (by the image), a codec name (fashion-mnist, photo) or a model id",
    ),
]
QualityQuery = Annotated[int | None, Query(ge=1, le=100, description="quality level, 1 = smallest")]
EffortQuery = Annotated[
    int,
    Query(ge=0, le=3, description="0: one pass; 1-3: more encoder time, fewer bytes, same decoder"),
]


async def _compress(
    codec: HostedCodec, pixels: list, effort: int, request: Request, settings
) -> list[bytes]:
    """IRs of model inputs: one pass through the codec's batcher, or with effort above 0
    through its refiner (a queue and a worker of its own)."""
    if effort > settings.max_effort:
        raise ApiError(
            422,
            "invalid_request",
            f"effort {effort} is above this server's highest, {settings.max_effort}",
        )
    if effort == 0:
        return await run_batched(codec.batcher, pixels, request, settings.request_timeout_s)
    items = [(p, effort) for p in pixels]
    return await run_batched(codec.refiner, items, request, settings.request_timeout_s)


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
async def encode(
    request: Request,
    model: ModelQuery = None,
    quality: QualityQuery = None,
    effort: EffortQuery = 0,
) -> Response:
    registry = registry_of(request)
    pick, settings = registry.codec_chooser(model, quality), registry.settings
    data = (await read_uploads(request, "file", 1))[0]
    image = open_image(data, settings.max_pixels)
    codec = pick(image)
    pixels = model_input(image, codec.shape)
    (ir,) = await _compress(codec, [pixels], effort, request, settings)
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
async def encode_batch(
    request: Request,
    model: ModelQuery = None,
    quality: QualityQuery = None,
    effort: EffortQuery = 0,
) -> Response:
    registry = registry_of(request)
    pick, settings = registry.codec_chooser(model, quality), registry.settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "multipart_required", "send the images as multipart fields 'files'")
    images = await read_uploads(request, "files", settings.max_images_per_request)
    if len(images) > settings.max_images_per_request:
        raise ApiError(
            413, "too_many_images", f"at most {settings.max_images_per_request} images a request"
        )
    # Check every image before queueing any: a bad one fails the request and costs nothing.
    by_codec: dict[str, tuple[HostedCodec, list[int], list]] = {}
    for i, data in enumerate(images):
        image = open_image(data, settings.max_pixels)
        codec = pick(image)
        _, places, pixels = by_codec.setdefault(codec.manifest.id, (codec, [], []))
        places.append(i)
        pixels.append(model_input(image, codec.shape))
    irs: list[bytes] = [b""] * len(images)
    for codec, places, pixels in by_codec.values():  # with `auto`, one group per codec
        coded = await _compress(codec, pixels, effort, request, settings)
        for i, ir in zip(places, coded, strict=True):
            irs[i] = ir
    body = msgpack.packb(irs, use_bin_type=True)
    models = ",".join(by_codec)
    codec = next(iter(by_codec.values()))[0]
    headers = {**_headers(codec, len(body)), "X-Latentwire-Model": models}
    return Response(body, media_type="application/msgpack", headers=headers)
