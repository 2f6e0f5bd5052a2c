"""The app factory: settings in, a FastAPI app out; models load in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from latentwire.server.errors import install_error_handlers
from latentwire.server.metrics import Metrics
from latentwire.server.middleware import ApiKeys, BodyLimit, RequestMetrics
from latentwire.server.registry import ModelRegistry
from latentwire.server.routes import encode, generate, health, models, upscale, web
from latentwire.server.settings import Settings
from latentwire.server.workers import stand_back

log = logging.getLogger("latentwire.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    registry = ModelRegistry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(registry.load)
        # Each model gets a worker thread of its own: batches of different models never
        # wait for each other (server/workers.py).
        await registry.start(metrics.observe_batch)
        if registry.stand_back:  # the event loop (and the threads it starts) too
            stand_back(registry.stand_back)
        # Move the start-up objects (models, routes) out of the collector's sight: full
        # collections over them otherwise stall the event loop for tens of milliseconds.
        gc.collect()
        gc.freeze()
        app.state.ready = True
        log.info("ready: %d models", len(registry.hosted))
        yield
        app.state.ready = False
        await registry.stop()

    # With API keys the schema needs a key too, and the interactive docs are off (their
    # page cannot send one when it fetches the schema).
    open_docs = not settings.keys
    app = FastAPI(
        title="latentwire",
        summary="A learned image codec: encode here, decode anywhere without torch.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if open_docs else None,
        docs_url="/docs" if open_docs else None,
        redoc_url="/redoc" if open_docs else None,
    )
    app.state.registry, app.state.metrics = registry, metrics  # settings: registry.settings
    app.state.ready = False
    install_error_handlers(app)

    for routes in (health, models, encode, upscale, generate, web):
        app.include_router(routes.router)
    app.add_api_route("/metrics", health.metrics_response, methods=["GET"], include_in_schema=False)
    if not open_docs:

        async def openapi_schema() -> JSONResponse:
            return JSONResponse(app.openapi())

        app.add_api_route(
            "/openapi.json",
            openapi_schema,
            methods=["GET"],
            include_in_schema=False,
        )

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
    if settings.keys:
        # Health stays open (orchestrators probe it without a key), and so do the page and
        # its static files: a browser loads them without a header; the page then asks for
        # a key and sends it with each request.
        open_paths = [route.path for route in health.router.routes] + ["/"]
        app.add_middleware(
            ApiKeys,
            keys=settings.keys,
            open_paths=open_paths,
            open_prefixes=["/client/"],
            metrics=metrics,
        )
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: sees every answer
    return app
