"""The app factory: settings in, a FastAPI app out; models load in the lifespan."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request

from latentwire.server.deps import require_api_key
from latentwire.server.errors import error_response, install_error_handlers
from latentwire.server.metrics import Metrics
from latentwire.server.registry import ModelRegistry
from latentwire.server.routes import encode, health, models
from latentwire.server.settings import Settings

log = logging.getLogger("latentwire.server")


class BodyLimit:
    """Refuse request bodies over the limit (413), by Content-Length or while streaming."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, scope, receive, send) -> None:
        message = f"request bodies are limited to {self.limit} bytes"
        await error_response(413, "body_too_large", message)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    registry = ModelRegistry(settings)
    # One worker thread: model calls run one batch at a time, off the event loop.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latentwire-model")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(executor, registry.load)
        registry.start(executor, metrics.observe_batch)
        app.state.ready = True
        log.info("ready: %d models", len(registry.codecs))
        yield
        app.state.ready = False
        await registry.stop()
        executor.shutdown(wait=True)

    app = FastAPI(
        title="latentwire",
        summary="A learned image codec: encode here, decode anywhere without torch.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings, app.state.registry, app.state.metrics = settings, registry, metrics
    app.state.ready = False
    install_error_handlers(app)

    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    app.include_router(models.router, dependencies=protected)
    app.include_router(encode.router, dependencies=protected)
    app.add_api_route(
        "/metrics",
        health.metrics_response,
        methods=["GET"],
        dependencies=protected,
        include_in_schema=False,
    )

    @app.middleware("http")
    async def count(request: Request, call_next):
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - began)
        code = getattr(request.state, "error_code", None)
        if code:
            metrics.errors.labels(code).inc()
        return response

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
