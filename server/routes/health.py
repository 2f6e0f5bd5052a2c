from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from latentwire.server.deps import registry_of
from latentwire.server.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Every model of this server's tasks is loaded and warmed up")
async def readyz(request: Request) -> dict[str, object]:
    if not getattr(request.app.state, "ready", False):
        raise ApiError(503, "not_ready", "models are still loading", {"Retry-After": "1"})
    registry = registry_of(request)
    return {
        "status": "ready",
        "tasks": list(registry.settings.hosted_tasks),
        "models": len(registry.hosted),
    }


def metrics_response(request: Request) -> Response:
    metrics = request.app.state.metrics
    for model, hosted in registry_of(request).hosted.items():
        metrics.queue_depth.labels(model).set(hosted.batcher.depth)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
