"""What routes take from the app: its model registry (and through it, the settings).

A plain function, not a FastAPI dependency: FastAPI solves every dependency on every
request, measurable on the /encode hot path, and there is nothing here to inject.
"""

from __future__ import annotations

from fastapi import Request

from latentwire.server.registry import ModelRegistry


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry
