"""Deployments: run them (background jobs), list, show, and read or stream their event logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from estate.api import pages, sse
from estate.api.deps import Estate, Who
from estate.api.problems import ERRORS
from estate.api.requests import ENV_PATTERN, ID_PATTERN, DeployIn, DriftIn, EnvRollbackIn
from estate.api.routes.jobs import accepted
from estate.app.views.deployments import DeploymentSummaryView, DeploymentView, LogChunk, LogEvent
from estate.app.views.jobs import JobView
from estate.domain.ids import EnvRef

router = APIRouter(tags=["deployments"], responses=ERRORS)

DeploymentId = Annotated[int, Path(ge=1, le=2**53, description="a deployment id")]


@router.post("/deployments", status_code=202)
def deploy(body: DeployIn, estate: Estate, who: Who, response: Response) -> JobView:
    """Deploy (or with `plan_only`, plan) environments in a background job; its result is a BatchView."""
    refs = [EnvRef.parse(e) for e in body.envs]
    job = estate.jobs.submit(
        who,
        "deploy",
        body.model_dump(),
        lambda progress: estate.deployments.deploy(who, refs, plan_only=body.plan_only, progress=progress),
        check=lambda: estate.deployments.authorize(who, "deploy", refs),
    )
    return accepted(job, response)


@router.post("/deployments:drift", status_code=202)
def drift(body: DriftIn, estate: Estate, who: Who, response: Response) -> JobView:
    """Plan environments (default: all) against their configuration in a background job (a DriftReport)."""
    refs = None if body.envs is None else [EnvRef.parse(e) for e in body.envs]
    job = estate.jobs.submit(
        who,
        "drift",
        body.model_dump(),
        lambda progress: estate.deployments.drift(who, refs, fail_on_drift=body.fail_on_drift, progress=progress),
        check=lambda: estate.deployments.authorize(who, "drift", refs),
    )
    return accepted(job, response)


@router.post("/environments/{project}/{env}:rollback", status_code=202)
def rollback_env(
    project: Annotated[str, Path(pattern=ID_PATTERN)],
    env: Annotated[str, Path(pattern=ID_PATTERN)],
    body: EnvRollbackIn,
    estate: Estate,
    who: Who,
    response: Response,
) -> JobView:
    """Re-apply an earlier deployment's resolved graph to the environment, in a background job (a BatchView)."""
    ref = EnvRef(project, env)
    job = estate.jobs.submit(
        who,
        "rollback",
        {"env": str(ref), "to": body.to},
        lambda _progress: estate.deployments.rollback(who, ref, body.to),
        check=lambda: estate.deployments.authorize(who, "rollback", [ref]),
    )
    return accepted(job, response)


@router.get("/deployments")
def deployments(
    estate: Estate,
    env: Annotated[str | None, Query(pattern=ENV_PATTERN, description="only this environment (project/env)")] = None,
    limit: pages.Limit = pages.DEFAULT_LIMIT,
    after: pages.After = None,
) -> pages.Page[DeploymentSummaryView]:
    """Deployments, newest first."""
    found = estate.deployments.list(EnvRef.parse(env) if env else None, limit=limit + 1, before=pages.before_id(after))
    return pages.by_id(found, lambda d: d.id, limit)


@router.get("/deployments/{deployment_id}")
def deployment(deployment_id: DeploymentId, estate: Estate) -> DeploymentView:
    """Everything recorded about a deployment except its event log; sensitive outputs masked."""
    return estate.deployments.show(deployment_id)


@router.get("/deployments/{deployment_id}/logs")
def logs(
    deployment_id: DeploymentId,
    estate: Estate,
    after: Annotated[int, Query(ge=-1, le=2**31, description="only events after this sequence number")] = -1,
) -> LogChunk:
    """The deployment's events after `after`; `done` once it has ended."""
    return estate.deployments.log(deployment_id, after=after)


@router.get(
    "/deployments/{deployment_id}/logs/stream", response_class=StreamingResponse, responses=sse.documented("LogEvent")
)
def stream_logs(
    deployment_id: DeploymentId,
    request: Request,
    estate: Estate,
    after: Annotated[int | None, Query(ge=-1, le=2**31, description="resume after this sequence number")] = None,
) -> StreamingResponse:
    """The deployment's events as they are written (SSE `log` events, id = sequence number), ending with an
    `end` event once the deployment has ended; `Last-Event-ID` resumes."""
    estate.deployments.show(deployment_id)  # 404 before the stream starts
    state = {"done": False}

    def read(last: int) -> list[LogEvent]:
        chunk = estate.deployments.log(deployment_id, after=last)
        state["done"] = chunk.done
        return chunk.events

    async def frames() -> AsyncIterator[str]:
        async for text in sse.stream(
            request,
            read,
            sse.last_event_id(request, after),
            lambda e: sse.frame(e.seq, "log", e),
            lambda e: e.seq,
            stopping=request.app.state.stopping,
            done=lambda: state["done"],
        ):
            yield text
        yield sse.frame(None, "end", estate.deployments.show(deployment_id))

    return StreamingResponse(frames(), media_type=sse.MEDIA_TYPE, headers={"Cache-Control": "no-cache"})
