"""The FastAPI application of `estate server`: `/api/v1` (one router per resource), the event stream, health
and metrics, on a hosted `App` whose engine host and job workers run for the server's lifetime."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry, disable_created_metrics
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

import estate
from estate.api import problems
from estate.api.caller import reader, request_id
from estate.api.limits import MAX_BODY_BYTES, BodyLimit
from estate.api.metrics import EstateCollector, HttpMetrics
from estate.api.routes import audit, deployments, events, guardrails, health, identity, inventory, jobs, rollouts
from estate.api.throttle import AuthThrottle
from estate.app import App
from estate.app.hosting import Hosting
from estate.app.views.deployments import LogEvent
from estate.app.views.events import EventView

PREFIX = "/api/v1"


def create_api(app: App, *, max_body_bytes: int = MAX_BODY_BYTES, auth_failures_per_minute: int = 10) -> FastAPI:
    """The API on `app` (bootstrapped with `Wiring(hosted=True)`); its lifespan starts and stops the engine.
    An address with more than `auth_failures_per_minute` failed authentications gets 429 for a while."""
    hosting = Hosting(app)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hosting.start()
        try:
            yield
        finally:
            api.state.stopping.set()
            hosting.stop()

    api = FastAPI(
        title="Estate",
        version=getattr(estate, "__version__", "0.1.0"),
        description="Roll out Terraform/OpenTofu module versions across an estate of environments in waves. "
        "Errors are RFC 9457 problem documents (application/problem+json).",
        lifespan=lifespan,
        docs_url=None,  # the interactive pages load scripts from a CDN: nothing is fetched at run time
        redoc_url=None,
    )
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double what Prometheus stores and nobody graphs them
    registry = CollectorRegistry()
    registry.register(EstateCollector(app.metrics))
    api.state.estate = app
    api.state.hosting = hosting
    api.state.registry = registry
    api.state.stopping = threading.Event()
    api.state.auth_throttle = AuthThrottle(limit=auth_failures_per_minute, window=60.0)
    problems.install(api)
    for router in (inventory, deployments, rollouts, guardrails, audit, jobs, events):  # authenticated readers
        api.include_router(router.router, prefix=PREFIX, dependencies=[Depends(reader)])
    api.include_router(identity.router, prefix=PREFIX)  # authenticated; whoami needs no role
    api.include_router(health.router)
    api.add_middleware(BaseHTTPMiddleware, dispatch=_request_id)
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    api.add_middleware(HttpMetrics, registry=registry, prefix=PREFIX)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
            api.openapi_schema = problems.add_schemas(document, EventView, LogEvent)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api


async def _request_id(request: Request, call_next: RequestResponseEndpoint) -> Response:
    rid = request_id(request)
    response = await call_next(request)
    response.headers["X-Request-ID"] = rid
    return response
