"""Views of the estate: environments, modules and their usage, rollout plans, `apply` results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from estate.app.views import View


class FlaggedVersionView(View):
    """A module version an environment is on that is deprecated or defective."""

    module: str
    version: str
    lifecycle: str  # deprecated | defective
    lifecycle_reason: str


class EnvironmentView(View):
    ref: str  # project/env
    project: str
    id: str
    type: str
    owner: str
    labels: dict[str, str]
    flagged: list[FlaggedVersionView] = []  # versions it is on that are deprecated or defective


class ModuleVersionView(View):
    version: str
    source: str
    published_at: datetime | None = None
    published_by: str | None = None
    lifecycle: str = "published"  # published | deprecated | defective
    lifecycle_reason: str = ""
    lifecycle_by: str | None = None
    lifecycle_at: datetime | None = None


class ModuleView(View):
    id: str
    resource_type: str
    versions: list[ModuleVersionView]  # oldest first, by semantic version


class UsageRow(View):
    env: str
    env_type: str
    owner: str
    resource: str  # the manifest alias
    version: str | None
    rule_scope: str | None  # which kind of rule decided: global, env_type, project, env, pin...
    lifecycle: str | None = None  # of that version: published | deprecated | defective
    lifecycle_reason: str = ""


class UsageTotals(View):
    version: dict[str, int]
    env_type: dict[str, int]
    owner: dict[str, int]


class UsageView(View):
    """Who uses which version of a module: impact analysis before a rollout."""

    module: str
    environments: list[UsageRow]
    totals: UsageTotals
    unresolved: list[str]  # environments whose manifest needs the module's type but no rule picks a version
    flagged: list[str] = []  # environments on a deprecated or defective version


class PublishView(View):
    module: str
    version: str
    source: str
    created: bool  # False: the identical version was already published


class PlanSummaryView(View):
    id: str
    description: str
    waves: list[str]


class PlanWaveView(View):
    name: str
    max_parallel: int
    failure_tolerance: str  # a count, or a percent of the wave
    on_failure: str  # halt | rollback
    auto_promote: bool
    gates: list[str]  # each gate as people read it
    spec: dict[str, Any]  # the whole wave as stored
    environments: list[str]  # who the wave would take now (first matching wave wins)


class PlanView(View):
    id: str
    description: str
    destructive: str
    waves: list[PlanWaveView]


class SyncChangeView(View):
    kind: str
    key: str
    action: str  # add | change | remove
    fields: list[str]


class ApplyView(View):
    applied: bool
    changes: list[SyncChangeView]
    held_for_prune: list[SyncChangeView]


class InitView(View):
    home: str
    database: str
