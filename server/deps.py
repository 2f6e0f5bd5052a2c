"""Dependencies injected into routes, as ``Annotated`` aliases.

All are ``async def``: they do no blocking work, and FastAPI would run a plain ``def``
dependency in its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from latentwire.server.errors import ApiError
from latentwire.server.registry import ModelRegistry
from latentwire.server.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With keys configured, ``Authorization: Bearer <key>`` must name one (constant time)."""
    keys = settings.keys
    if not keys:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given_bytes = given.strip().encode()
    ok = False
    for key in keys:  # no early exit: the time taken says nothing about which key matched
        ok |= hmac.compare_digest(given_bytes, key.encode())
    if scheme.lower() != "bearer" or not ok:
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
            {"WWW-Authenticate": "Bearer"},
        )
