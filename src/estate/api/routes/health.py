"""Liveness, readiness and metrics (outside `/api/v1`, where orchestrators and Prometheus look)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from estate.api.deps import Reader
from estate.api.problems import documented
from estate.app.views.events import ReadinessView

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"model": ReadinessView, "description": "ready"},
        503: {"model": ReadinessView, "description": "not ready: see the failed check"},
    },
)
def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the store answers, its schema is migrated, the engine runs."""
    view: ReadinessView = request.app.state.hosting.readiness()
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if view.ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "metrics"},
        **documented(401, 403, 429),
    },
)
def metrics(request: Request, _who: Reader) -> Response:
    """Prometheus exposition: the estate (from the store) and this server's HTTP requests (authenticated:
    Prometheus scrapes with `authorization: {credentials: <token>}`)."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
