"""POST /upscale: an image in, the 2x image out, tiles of many requests batched together."""

from __future__ import annotations

import asyncio
import io
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from latentwire.server.deps import registry_of
from latentwire.server.errors import ApiError
from latentwire.server.hosted import HostedUpscaler
from latentwire.server.routes.common import image_body, read_uploads, run_batched
from latentwire.server.settings import Settings
from latentwire.shared.images import open_image
from latentwire.shared.upscaling import UpscaleJob

router = APIRouter(tags=["upscale"])

OutputFormat = Literal["png", "webp", "jpeg"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


def pick_format(asked: str | None, accept: str) -> str:
    """``format=`` wins; else the first image type the Accept header names; else PNG."""
    if asked:
        return asked
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        for name, media_type in MEDIA_TYPES.items():
            if media == media_type:
                return name
    return "png"


def _prepare(data: bytes, settings: Settings, channels: int) -> UpscaleJob:
    """Decode and cut into windows (CPU work: runs in a thread, off the event loop)."""
    image = open_image(data, settings.max_upscale_pixels)
    return UpscaleJob(image, channels, settings.upscale_tile, settings.upscale_overlap)


def _finish(job: UpscaleJob, outputs: list[np.ndarray], scale: int, fmt: str) -> bytes:
    """Stitch the upscaled windows and encode the image (in a thread)."""
    image = job.finish(outputs, scale)
    if fmt == "jpeg" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # JPEG has no alpha
    buffer = io.BytesIO()
    options = {"png": {"compress_level": 1}, "webp": {"quality": 90}, "jpeg": {"quality": 92}}
    image.save(buffer, fmt.upper(), **options[fmt])
    return buffer.getvalue()


async def _run_in_steps(
    upscaler: HostedUpscaler, windows: list[np.ndarray], request: Request, timeout_s: float
) -> list[np.ndarray]:
    """A request's windows through the batcher, ``max_tiles`` at a time: each step queues
    behind the steps already waiting, so a big image takes turns with the requests that
    came after it instead of holding the model for seconds; batches still fill with the
    windows of every waiting request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    outputs: list[np.ndarray] = []
    for start in range(0, len(windows), upscaler.max_tiles):
        step = windows[start : start + upscaler.max_tiles]
        left = deadline - loop.time()
        if left <= 0:
            raise ApiError(504, "timeout", "the request waited too long for the model")
        (done,) = await run_batched(upscaler.batcher, [step], request, left)
        outputs += done
    return outputs


@router.post(
    "/upscale",
    summary="Upscale one image 2x (multipart field `file` or the raw body)",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "image"}},
    openapi_extra=image_body("file"),
)
async def upscale(
    request: Request,
    model: Annotated[str | None, Query(max_length=128, description="upscaler id")] = None,
    format: Annotated[OutputFormat | None, Query(description="output format")] = None,
) -> Response:
    registry = registry_of(request)
    settings = registry.settings
    upscaler: HostedUpscaler = registry.upscaler(model)
    fmt = pick_format(format, request.headers.get("accept", ""))
    data = (await read_uploads(request, "file", 1))[0]
    job = await asyncio.to_thread(_prepare, data, settings, upscaler.model.config.channels)
    outputs = await _run_in_steps(upscaler, job.windows, request, settings.request_timeout_s)
    body = await asyncio.to_thread(_finish, job, outputs, upscaler.scale, fmt)
    headers = {"X-Latentwire-Model": upscaler.manifest.id}
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
