"""Pure ASGI middleware: API keys, the request-body limit and the request metrics.

Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
request through an extra task group and stream copies, which measured at about a tenth of
the server's CPU time under load on /encode.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latentwire.server.errors import error_response
from latentwire.server.metrics import Metrics


class ApiKeys:
    """With keys configured, every path but ``open_paths`` (and those starting with one of
    ``open_prefixes``) needs ``Authorization: Bearer <key>`` naming one of them (401
    otherwise). A middleware, not a route dependency, so
    that a server without keys pays nothing per request and one with keys refuses a
    stranger before reading the body or resolving the route."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Collection[str],
        open_paths: Collection[str],
        metrics: Metrics,
        open_prefixes: Collection[str] = (),
    ) -> None:
        self.app, self.metrics = app, metrics
        self.keys = [key.encode() for key in keys]
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)

    def _allowed(self, authorization: bytes) -> bool:
        scheme, _, given = authorization.partition(b" ")
        given = given.strip()
        ok = False
        for key in self.keys:  # no early exit: the time taken says nothing about which matched
            ok |= hmac.compare_digest(given, key)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in self.open_paths
            or path.startswith(self.open_prefixes)
        ):
            return await self.app(scope, receive, send)
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if self._allowed(authorization):
            return await self.app(scope, receive, send)
        self.metrics.errors.labels("unauthorized").inc()
        message = "a valid API key is required: Authorization: Bearer <key>"
        headers = {"WWW-Authenticate": "Bearer"}
        await error_response(401, "unauthorized", message, headers)(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over the limit (413), by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.errors.labels("body_too_large").inc()
        message = f"request bodies are limited to {self.limit} bytes"
        await error_response(413, "body_too_large", message)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(scope, receive, send)
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
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


class RequestMetrics:
    """Count requests by route template and status, and time them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router records the matched route in the scope; templates keep labels few.
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - began)
