"""Dependencies injected into routes, as ``Annotated`` aliases.

All are ``async def``: they do no blocking work, and FastAPI would run a plain ``def``
dependency in its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from latentwire.server.registry import ModelRegistry
from latentwire.server.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
