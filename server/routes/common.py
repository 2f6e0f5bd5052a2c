"""What the model routes share: reading the uploaded image(s) and waiting on a batcher."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from latentwire.server.batcher import DynamicBatcher, Overloaded
from latentwire.server.errors import ApiError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def image_body(field: str = "file") -> dict[str, Any]:
    """OpenAPI request body: one image, multipart field ``field`` or the raw body."""
    raw = {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES}
    multipart = {
        "schema": {
            "type": "object",
            "properties": {field: {"type": "string", "format": "binary"}},
            "required": [field],
        }
    }
    return {"requestBody": {"content": {"multipart/form-data": multipart, **raw}, "required": True}}


async def read_uploads(request: Request, field: str, limit: int) -> list[bytes]:
    """The image(s) of a request: multipart ``field`` parts, or the raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=limit, max_fields=limit)
        parts = [p for p in form.getlist(field) if isinstance(p, UploadFile)]
        if not parts:
            raise ApiError(422, "missing_file", f"multipart body has no file field {field!r}")
        return [await p.read() for p in parts]
    return [await request.body()]


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_batched(
    batcher: DynamicBatcher, items: list, request: Request, timeout_s: float
) -> list:
    """Results for ``items`` through the batcher, or the API error that says why not.

    A full queue answers 503 at once; past ``timeout_s`` the request gets 504; a client that
    disconnects stops waiting. Either way its queued items are skipped, not computed.
    """
    work = asyncio.ensure_future(batcher.submit_many(items))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {work, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if work in done:
        try:
            return work.result()
        except Overloaded:
            raise ApiError(
                503, "overloaded", "the server is busy; retry shortly", {"Retry-After": "1"}
            ) from None
    work.cancel()
    if gone in done:
        # Nobody reads this answer; it names the case in the logs and metrics.
        raise ApiError(499, "client_disconnected", "the client closed the connection")
    raise ApiError(504, "timeout", "the request waited too long for the model")


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (RFC 9110: a comma-separated list of
    entity tags, or ``*``, compared weakly: ``W/"x"`` matches ``"x"``)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


def accepts_gzip(request: Request) -> bool:
    """Whether the request's Accept-Encoding takes gzip (RFC 9110: ``gzip``, ``x-gzip`` or
    ``*`` with a q-value above 0; a q-value gzip is given itself wins over ``*``'s)."""
    weights: dict[str, float] = {}
    for item in request.headers.get("accept-encoding", "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.lower()] = q
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False
