"""Estate-as-code, environments, modules (versions, usage, publish) and rollout plans."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from estate.api import pages
from estate.api.deps import Estate, Who
from estate.api.problems import ERRORS
from estate.api.requests import ID_PATTERN, VERSION_PATTERN, ApplyIn, LifecycleIn, PublishIn
from estate.app.inventory import SourceFile
from estate.app.views.inventory import (
    ApplyView,
    EnvironmentView,
    ModuleVersionView,
    ModuleView,
    PlanSummaryView,
    PlanView,
    PublishView,
    UsageView,
)
from estate.errors import InputError

router = APIRouter(responses=ERRORS)

ModuleId = Annotated[str, Path(pattern=ID_PATTERN, description="a module id")]
PlanId = Annotated[str, Path(pattern=ID_PATTERN, description="a rollout plan id")]
VersionId = Annotated[str, Path(pattern=VERSION_PATTERN, description="a published version, e.g. 2.0.1")]


@router.post("/estate:apply", tags=["estate"])
def apply(body: ApplyIn, estate: Estate, who: Who) -> ApplyView:
    """Validate estate-as-code and sync it into the store in one transaction (`dry_run`: the diff only)."""
    sources = [SourceFile(d.name, d.content) for d in body.documents]
    return estate.inventory.apply(who, sources, dry_run=body.dry_run, prune=body.prune, force=body.force)


@router.get("/schema", tags=["estate"])
def schema(estate: Estate) -> dict[str, Any]:
    """The JSON Schema of estate-as-code."""
    return estate.inventory.schema()


@router.get("/environments", tags=["environments"])
def environments(
    estate: Estate,
    project: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    env_type: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    label: Annotated[list[str] | None, Query(description="key=value; repeat to AND several")] = None,
    limit: pages.Limit = pages.DEFAULT_LIMIT,
    after: pages.After = None,
) -> pages.Page[EnvironmentView]:
    """Environments, ordered by env type rank, project and id."""
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"label: '{item}' is not of the form key=value")
        labels[key] = value
    found = estate.inventory.environments(project=project, env_type=env_type, labels=labels)
    return pages.page(found, lambda e: e.ref, limit, after)


@router.get("/modules", tags=["modules"])
def modules(
    estate: Estate, limit: pages.Limit = pages.DEFAULT_LIMIT, after: pages.After = None
) -> pages.Page[ModuleView]:
    """Modules with their published versions (oldest first)."""
    return pages.page(estate.inventory.modules(), lambda m: m.id, limit, after)


@router.get("/modules/{module}/usage", tags=["modules"])
def usage(module: ModuleId, estate: Estate) -> UsageView:
    """Who uses which version of the module: impact analysis before a rollout."""
    return estate.inventory.usage(module)


@router.post(
    "/modules/{module}/versions",
    tags=["modules"],
    status_code=201,
    responses={200: {"model": PublishView, "description": "the identical version was already published"}},
)
def publish(module: ModuleId, body: PublishIn, estate: Estate, who: Who, response: Response) -> PublishView:
    """Publish an immutable version (201; 200 when the identical version was already published)."""
    view = estate.inventory.publish(who, module, body.version, body.source, inputs_from=body.inputs_from)
    response.status_code = 201 if view.created else 200
    return view


@router.post("/modules/{module}/versions/{version}/deprecate", tags=["modules"])
def deprecate(module: ModuleId, version: VersionId, body: LifecycleIn, estate: Estate, who: Who) -> ModuleVersionView:
    """Mark a version deprecated (admin): deploying it still works, with a warning."""
    return estate.inventory.set_lifecycle(who, module, version, "deprecated", body.reason)


@router.post("/modules/{module}/versions/{version}/mark-defective", tags=["modules"])
def mark_defective(
    module: ModuleId, version: VersionId, body: LifecycleIn, estate: Estate, who: Who
) -> ModuleVersionView:
    """Mark a version defective (admin): every new deployment of it, rollout start and retarget is refused."""
    return estate.inventory.set_lifecycle(who, module, version, "defective", body.reason)


@router.post("/modules/{module}/versions/{version}/restore", tags=["modules"])
def restore(module: ModuleId, version: VersionId, body: LifecycleIn, estate: Estate, who: Who) -> ModuleVersionView:
    """Make a deprecated or defective version published again (admin)."""
    return estate.inventory.set_lifecycle(who, module, version, "published", body.reason)


@router.get("/plans", tags=["plans"])
def plans(
    estate: Estate, limit: pages.Limit = pages.DEFAULT_LIMIT, after: pages.After = None
) -> pages.Page[PlanSummaryView]:
    return pages.page(estate.inventory.plans(), lambda p: p.id, limit, after)


@router.get("/plans/{plan}", tags=["plans"])
def plan(plan: PlanId, estate: Estate) -> PlanView:
    """A plan's waves and which environments each would take now."""
    return estate.inventory.plan(plan)
