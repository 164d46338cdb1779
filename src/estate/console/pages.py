"""The console's pages: each one parses its query, calls the application layer (the same use cases and views as
the API) and renders a template. Every page needs a logged-in person allowed to read; actions do not go
through here but through `/api/v1` (the page's script sends them with the session and its CSRF token)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse

from estate.api import pages, session
from estate.api.caller import authenticate, reader
from estate.api.deps import Estate
from estate.api.requests import ENV_PATTERN, ID_PATTERN, ROLLOUT_PATTERN, WAVE_PATTERN, labels
from estate.api.routes.rollouts import STATES
from estate.app import Caller
from estate.app.audit import AuditFilter
from estate.app.views.inventory import EnvironmentVersionsView
from estate.app.views.rollouts import EnvQuery, PreviewView
from estate.console import controls
from estate.console.render import ConsoleRoute, LoginRequired, Render
from estate.domain.lifecycle import Lifecycle
from estate.errors import InputError, NotFoundError, Throttled, Unauthenticated

ENVS_PER_PAGE = 50  # environments of a rollout per page
ROWS_PER_PAGE = 200  # rows of the estate, a module's usage, rollouts, audit entries

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def viewer(request: Request) -> Caller:
    """The logged-in person (the session cookie's credential), allowed to read; else to the login page."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    credential = session.credential(request)
    if credential is None:
        raise LoginRequired(back)
    try:
        who = authenticate(request, lambda: (None, credential))
    except Throttled:
        raise
    except Unauthenticated:
        raise LoginRequired(back, expired=True) from None
    return reader(request, who)


Viewer = Annotated[Caller, Depends(viewer)]
After = Annotated[str | None, Query(min_length=1, max_length=256)]
Filter = Annotated[str | None, Query(pattern=f"({ID_PATTERN})|^$")]  # empty: a form's "any"


@dataclass
class Cell:
    """The environments of one env type in one project: how many, and which versions of each module they run."""

    count: int = 0
    versions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Matrix:
    types: list[str]  # in rank order
    projects: list[str]
    cells: dict[tuple[str, str], Cell]  # (env type, project)

    @classmethod
    def of(cls, envs: Sequence[EnvironmentVersionsView]) -> Matrix:
        cells: dict[tuple[str, str], Cell] = {}
        for e in envs:
            cell = cells.setdefault((e.type, e.project), Cell())
            cell.count += 1
            for module, version in e.versions.items():
                if version not in cell.versions.setdefault(module, []):
                    cell.versions[module] = sorted([*cell.versions[module], version])
        types = list(dict.fromkeys(e.type for e in envs))
        return cls(types, sorted({e.project for e in envs}), cells)


@router.get("/")
def estate_page(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    project: Filter = None,
    env_type: Filter = None,
    owner: Annotated[str | None, Query(max_length=255)] = None,
    label: Annotated[str | None, Query(max_length=255, description="key=value")] = None,
    after: After = None,
) -> HTMLResponse:
    """Who runs what: environments by env type and project, with the version of every module."""
    found = estate.inventory.versions(
        project=project or None, env_type=env_type or None, owner=owner or None, labels=labels([label] if label else [])
    )
    page = pages.page(found, lambda e: e.ref, ROWS_PER_PAGE, after)
    everything = estate.inventory.environments()
    return render.page(
        request,
        who,
        "estate.html",
        title="Estate",
        groups=[(t, list(rows)) for t, rows in itertools.groupby(page.items, key=lambda e: e.type)],
        total=len(found),
        matrix=Matrix.of(found),
        next_cursor=page.next_cursor,
        modules=[m.id for m in estate.inventory.modules()],
        options={
            "project": sorted({e.project for e in everything}),
            "env_type": list(dict.fromkeys(e.type for e in everything)),
            "owner": sorted({e.owner for e in everything}),
        },
        filters={"project": project, "env_type": env_type, "owner": owner, "label": label},
    )


@router.get("/modules")
def modules_page(request: Request, who: Viewer, estate: Estate, render: Render) -> HTMLResponse:
    rollouts = estate.rollouts.list()
    latest = {r.module: r for r in rollouts}
    return render.page(request, who, "modules.html", title="Modules", modules=estate.inventory.modules(), latest=latest)


@router.get("/modules/{module}")
def module_page(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    module: Annotated[str, Path(pattern=ID_PATTERN)],
    after: After = None,
) -> HTMLResponse:
    """Versions, usage, rollouts, and the form that previews then starts a rollout."""
    found = next((m for m in estate.inventory.modules() if m.id == module), None)
    if found is None:
        raise NotFoundError(f"unknown module '{module}'")
    usage = estate.inventory.usage(module)
    plans = estate.inventory.plans()
    newest = found.versions[-1].version if found.versions else None
    denied = estate.rollouts.start_denial(who, module, newest, plans[0].id) if plans and newest else None
    return render.page(
        request,
        who,
        "module.html",
        title=f"Module {module}",
        module=found,
        usage=usage,
        usage_page=pages.page(usage.environments, lambda r: f"{r.env}#{r.resource}", ROWS_PER_PAGE, after),
        plans=plans,
        rollouts=list(reversed(estate.rollouts.list(module=module))),
        denied=denied,
    )


@router.get("/modules/{module}/preview")
def preview_fragment(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    module: Annotated[str, Path(pattern=ID_PATTERN)],
    job: Annotated[int, Query(ge=1, le=2**53)],
) -> HTMLResponse:
    """A finished preview job's blast radius, and the button that starts the rollout it previewed."""
    found = estate.jobs.get(job)
    if found.kind != "preview" or not isinstance(found.result, PreviewView) or found.result.module != module:
        raise InputError(f"job {job} is not a finished preview of module {module}")
    preview = found.result
    return render.page(
        request,
        who,
        "preview.html",
        preview=preview,
        denied=estate.rollouts.start_denial(who, module, preview.version, preview.plan),
    )


@router.get("/rollouts")
def rollouts_page(request: Request, who: Viewer, estate: Estate, render: Render, after: After = None) -> HTMLResponse:
    found = list(reversed(estate.rollouts.list()))
    page = pages.page(found, lambda r: r.id, ROWS_PER_PAGE, after)
    return render.page(request, who, "rollouts.html", title="Rollouts", rollouts=page)


RolloutId = Annotated[str, Path(pattern=ROLLOUT_PATTERN)]


@router.get("/rollouts/{rollout_id}")
def rollout_page(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    rollout_id: RolloutId,
    wave: Annotated[str | None, Query(pattern=f"({WAVE_PATTERN})|^$")] = None,
    state: Annotated[str | None, Query(pattern=f"^({STATES}|)$")] = None,
    after: Annotated[str | None, Query(max_length=127)] = None,
) -> HTMLResponse:
    """The rollout: waves, gates and their evidence, a page of environments, the controls, the audit trail;
    its live region is rendered again on each of the rollout's events."""
    query = EnvQuery(wave=wave or None, state=state or None, limit=ENVS_PER_PAGE, after=after or None)
    view = estate.rollouts.status(rollout_id, query=query)
    audit = estate.audit.entries(AuditFilter(targets=(f"rollout:{rollout_id}",), limit=ROWS_PER_PAGE))
    return render.page(
        request,
        who,
        "rollout.html",
        live="rollout_live.html",
        title=f"Rollout {rollout_id}",
        rollout=view,
        allowed=estate.rollouts.permissions(who, rollout_id),
        audit=audit,
        filters={"wave": wave, "state": state},
        states=STATES.split("|"),
    )


@router.get("/rollouts/{rollout_id}/confirm/{command}")
def confirm_fragment(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    rollout_id: RolloutId,
    command: Annotated[str, Path(pattern=r"^[a-z-]{1,32}$")],
    wave: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> HTMLResponse:
    """What a control will do, said before it is done: the confirmation dialog's content."""
    outline = estate.rollouts.status(rollout_id, query=EnvQuery(summary=True))
    acts_on = {"promote": outline.current_wave + 1, "approve": outline.current_wave}.get(command, wave)
    view = outline
    if acts_on is not None and any(w.number == acts_on for w in outline.waves):
        view = estate.rollouts.status(rollout_id, query=EnvQuery(wave=str(acts_on), limit=controls.PAGE))
    versions = []
    if command == "retarget":
        versions = [  # one the retarget would refuse is not offered
            v.version
            for m in estate.inventory.modules()
            if m.id == view.module
            for v in m.versions
            if Lifecycle(v.lifecycle).deployable
        ]
    try:
        confirmation = controls.confirmation(view, command, wave=wave, versions=versions)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return render.page(request, who, "confirm.html", confirm=confirmation, rollout=view)


@router.get("/deployments/{deployment_id}")
def deployment_page(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    deployment_id: Annotated[int, Path(ge=1, le=2**53)],
) -> HTMLResponse:
    """Transitions, plan, outputs (sensitive ones masked) and the log, streamed while it runs."""
    view = estate.deployments.show(deployment_id)
    return render.page(
        request,
        who,
        "deployment.html",
        live="deployment_live.html",
        title=f"Deployment {deployment_id}",
        deployment=view,
        log=estate.deployments.log(deployment_id),
    )


@router.get("/audit")
def audit_page(
    request: Request,
    who: Viewer,
    estate: Estate,
    render: Render,
    subject: Annotated[str | None, Query(max_length=255)] = None,
    rollout: Annotated[str | None, Query(pattern=f"({ROLLOUT_PATTERN})|^$")] = None,
    env: Annotated[str | None, Query(pattern=f"({ENV_PATTERN})|^$")] = None,
    outcome: Annotated[str | None, Query(pattern=r"^(ok|refused|failed|denied|)$")] = None,
    since: Annotated[str | None, Query(max_length=32, description="YYYY-MM-DDTHH:MM, UTC")] = None,
    until: Annotated[str | None, Query(max_length=32, description="YYYY-MM-DDTHH:MM, UTC")] = None,
    after: After = None,
) -> HTMLResponse:
    """The audit trail, newest first, filtered by who, what, outcome and when."""
    targets = tuple(t for t in (f"rollout:{rollout}" if rollout else "", f"env:{env}" if env else "") if t)
    wanted = AuditFilter(
        actor=subject or None,
        targets=targets,
        since=_time("since", since),
        until=_time("until", until),
        outcome=outcome or None,
        before_id=pages.before_id(after),
        limit=ROWS_PER_PAGE + 1,
    )
    page = pages.by_id(estate.audit.entries(wanted), lambda e: e.id, ROWS_PER_PAGE)
    filters = {"subject": subject, "rollout": rollout, "env": env, "outcome": outcome, "since": since, "until": until}
    return render.page(request, who, "audit.html", title="Audit", entries=page, filters=filters)


def _time(field: str, text: str | None) -> datetime | None:
    """A time a person typed (a datetime-local field: no zone), read as UTC."""
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{field}: '{text}' is not a time (YYYY-MM-DDTHH:MM, UTC)") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)
