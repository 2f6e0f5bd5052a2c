"""POST /generate: images from a GAN or DCGAN generator, the same ones for the same seed."""

from __future__ import annotations

import asyncio
import io
from typing import Annotated, Literal

import msgpack
import numpy as np
from fastapi import APIRouter, Query, Request, Response
from PIL import Image

from latentwire.server.deps import registry_of
from latentwire.server.errors import ApiError
from latentwire.server.routes.common import run_batched
from latentwire.shared.images import grid

router = APIRouter(tags=["generate"])


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _body(images: np.ndarray, fmt: str, columns: int | None) -> bytes:
    """One PNG grid, or a msgpack array of one PNG per image (in a thread)."""
    if fmt == "png":
        buffer = io.BytesIO()
        grid(images, columns).save(buffer, "PNG")
        return buffer.getvalue()
    return msgpack.packb([_png(image) for image in images])


@router.post(
    "/generate",
    summary="Generate n images from a seed: a PNG grid, or a msgpack array of PNGs",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}, "application/msgpack": {}},
            "description": "a grid (format=png) or one PNG per image (format=msgpack)",
        }
    },
)
async def generate_images(
    request: Request,
    model: Annotated[str | None, Query(max_length=128, description="generator id")] = None,
    n: Annotated[int, Query(ge=1, description="how many images")] = 16,
    seed: Annotated[int, Query(ge=0, lt=2**63, description="same seed, same images")] = 0,
    format: Annotated[Literal["png", "msgpack"], Query(description="grid or array")] = "png",
    columns: Annotated[int | None, Query(ge=1, le=256, description="grid width")] = None,
) -> Response:
    registry = registry_of(request)
    settings = registry.settings
    generator = registry.generator(model)
    if n > settings.max_generate_images:
        raise ApiError(
            422, "too_many_images", f"n is {n}; at most {settings.max_generate_images} a request"
        )
    (images,) = await run_batched(
        generator.batcher, [(n, seed)], request, settings.request_timeout_s
    )
    body = await asyncio.to_thread(_body, images, format, columns)
    headers = {"X-Latentwire-Model": generator.manifest.id, "X-Latentwire-Seed": str(seed)}
    media_type = "image/png" if format == "png" else "application/msgpack"
    return Response(body, media_type=media_type, headers=headers)
