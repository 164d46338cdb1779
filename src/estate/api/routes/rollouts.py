"""Rollouts: preview and start (background jobs, they plan every target), status and list, and every command;
a command returns as soon as the state machine has accepted it (the view) or refused it (409)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from estate.api import pages
from estate.api.deps import Estate, Who
from estate.api.problems import ERRORS
from estate.api.requests import (
    ID_PATTERN,
    ROLLOUT_PATTERN,
    WAVE_PATTERN,
    ApproveIn,
    PreviewIn,
    RerunIn,
    RetargetIn,
    RollbackIn,
    StartIn,
)
from estate.api.routes.jobs import accepted
from estate.app.progress import Progress
from estate.app.views.jobs import JobView
from estate.app.views.rollouts import EnvQuery, RetargetView, RolloutSummaryView, RolloutView

router = APIRouter(tags=["rollouts"], responses=ERRORS)

RolloutId = Annotated[str, Path(pattern=ROLLOUT_PATTERN, description="a rollout id, e.g. postgres-1")]
STATES = "pending|deploying|succeeded|failed|errored|rolling_back|rolled_back|skipped"


@router.post("/rollouts:preview", status_code=202)
def preview(body: PreviewIn, estate: Estate, who: Who, response: Response) -> JobView:
    """The blast radius per wave (a real `plan` of every target, unless `preflight` is false), in a background
    job whose result is a PreviewView."""
    job = estate.jobs.submit(
        who,
        "preview",
        body.model_dump(),
        lambda progress: estate.rollouts.preview(
            who, body.module, body.version, body.plan, preflight=body.preflight, progress=progress
        ),
        check=lambda: estate.rollouts.authorize_start(who, body.module, body.version, body.plan),
    )
    return accepted(job, response)


@router.post("/rollouts", status_code=202)
def start(body: StartIn, estate: Estate, who: Who, response: Response) -> JobView:
    """Validate and preflight, then record the rollout (the engine starts wave 1), in a background job whose
    result is a StartView (with the rollout's id)."""
    job = estate.jobs.submit(
        who,
        "start",
        body.model_dump(),
        lambda progress: estate.rollouts.start(
            who,
            body.module,
            body.version,
            body.plan,
            allow_uncovered=body.allow_uncovered,
            allow_destroy=body.allow_destroy,
            preflight=body.preflight,
            progress=progress,
            follow=False,
        ),
        check=lambda: estate.rollouts.authorize_start(who, body.module, body.version, body.plan),
    )
    return accepted(job, response)


@router.get("/rollouts")
def rollouts(
    estate: Estate,
    module: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    phase: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    limit: pages.Limit = pages.DEFAULT_LIMIT,
    after: pages.After = None,
) -> pages.Page[RolloutSummaryView]:
    """Rollouts, oldest first."""
    return pages.page(estate.rollouts.list(module=module, phase=phase), lambda r: r.id, limit, after)


@router.get("/rollouts/{rollout_id}")
def status(
    rollout_id: RolloutId,
    estate: Estate,
    wave: Annotated[str | None, Query(pattern=WAVE_PATTERN, description="only this wave (number or name)")] = None,
    state: Annotated[str | None, Query(pattern=f"^({STATES})$", description="only environments in this state")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="at most this many environments")] = None,
    after: Annotated[str | None, Query(max_length=127, description="the view's `next_cursor`: the next page")] = None,
    summary: Annotated[bool, Query(description="counts per wave and state only, no environments")] = False,
) -> RolloutView:
    """The rollout, its waves with counts per state, gate evidence, and the environments the query selects
    (paged: ask again with `after=next_cursor`)."""
    query = EnvQuery(wave=wave, state=state, limit=limit, after=after, summary=summary)
    return estate.rollouts.status(rollout_id, query=query)


@router.post("/rollouts/{rollout_id}/promote")
def promote(rollout_id: RolloutId, estate: Estate, who: Who) -> RolloutView:
    """Accept the current wave (its gates passed) and start the next one."""
    return estate.rollouts.promote(who, rollout_id, follow=False)


@router.post("/rollouts/{rollout_id}/approve")
def approve(rollout_id: RolloutId, estate: Estate, who: Who, body: ApproveIn | None = None) -> RolloutView:
    """Approve the current wave's approval gate (four-eyes: not the one who started the rollout); `override`
    accepts a halted wave as it is."""
    override = body.override if body else False
    return estate.rollouts.approve(who, rollout_id, override=override, follow=False)


@router.post("/rollouts/{rollout_id}/pause")
def pause(rollout_id: RolloutId, estate: Estate, who: Who) -> RolloutView:
    """Start nothing new; in-flight deployments finish."""
    return estate.rollouts.pause(who, rollout_id, follow=False)


@router.post("/rollouts/{rollout_id}/resume")
def resume(rollout_id: RolloutId, estate: Estate, who: Who) -> RolloutView:
    return estate.rollouts.resume(who, rollout_id, follow=False)


@router.post("/rollouts/{rollout_id}/abort")
def abort(rollout_id: RolloutId, estate: Estate, who: Who) -> RolloutView:
    """End the rollout: nothing new starts; environments stay on the version they are on."""
    return estate.rollouts.abort(who, rollout_id, follow=False)


@router.post("/rollouts/{rollout_id}/rollback")
def rollback(rollout_id: RolloutId, estate: Estate, who: Who, body: RollbackIn | None = None) -> RolloutView:
    """Roll a wave (default: the current one) back, each environment to its own previous version."""
    wave = None if body is None or body.wave is None else str(body.wave)
    return estate.rollouts.rollback(who, rollout_id, wave=wave, follow=False)


@router.post("/rollouts/{rollout_id}/rerun")
def rerun(rollout_id: RolloutId, estate: Estate, who: Who, body: RerunIn | None = None) -> RolloutView:
    """Run a wave (default: the current one) again; with `only_failed`, keep environments that succeeded."""
    wave = None if body is None or body.wave is None else str(body.wave)
    only_failed = body.only_failed if body else False
    return estate.rollouts.rerun(who, rollout_id, wave=wave, only_failed=only_failed, follow=False)


@router.post("/rollouts/{rollout_id}/retarget", status_code=202)
def retarget(rollout_id: RolloutId, body: RetargetIn, estate: Estate, who: Who, response: Response) -> JobView:
    """Preflight `version` on the rollout's targets, then retarget it, in a background job whose result is a
    RetargetView (the rollout and the preflight's warnings)."""

    def work(progress: Progress) -> RetargetView:
        view, warnings = estate.rollouts.retarget(
            who,
            rollout_id,
            body.version,
            allow_destroy=body.allow_destroy,
            preflight=body.preflight,
            progress=progress,
            follow=False,
        )
        return RetargetView(rollout=view, warnings=warnings)

    job = estate.jobs.submit(
        who,
        "retarget",
        {"rollout": rollout_id, **body.model_dump()},
        work,
        check=lambda: estate.rollouts.authorize_retarget(who, rollout_id, body.version),  # 404 and 403 at once
    )
    return accepted(job, response)
