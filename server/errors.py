"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentwire.server.registry import HostingError, TaskNotHosted, UnknownModel
from latentwire.shared.codec import ChoiceError, NoSuchCodec, NoSuchQuality, QualityMismatch
from latentwire.shared.images import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    UnsupportedPixels,
    WrongGeometry,
)

# Domain errors and their HTTP statuses, in one place (their codes are their own).
STATUS: dict[type[Exception], int] = {
    UnknownModel: 404,
    TaskNotHosted: 404,
    NoSuchCodec: 404,
    NoSuchQuality: 422,
    QualityMismatch: 422,
    EmptyImage: 422,
    ImageTooLarge: 413,
    UnsupportedImage: 415,
    CorruptImage: 422,
    UnsupportedPixels: 422,
    WrongGeometry: 422,
}


class ApiError(Exception):
    """An error a client caused or can act on; ``code`` is stable and machine-readable."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.app.state.metrics.errors.labels(exc.code).inc()
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
        code = exc.code  # type: ignore[attr-defined]
        request.app.state.metrics.errors.labels(code).inc()
        return error_response(STATUS[type(exc)], code, str(exc))

    for kind in (HostingError, ChoiceError, ImageError):
        app.add_exception_handler(kind, _domain_error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        request.app.state.metrics.errors.labels("invalid_request").inc()
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        request.app.state.metrics.errors.labels(code).inc()
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))
