"""Views of rollouts: previews (blast radius), status (waves, environments, gate evidence), lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from estate.app.views import View
from estate.app.views.guardrails import FreezeView


class EnvPreviewView(View):
    env: str
    current_version: str
    add: int = 0
    change: int = 0
    destroy: int = 0
    destructive: list[str] = []  # "replace module.db.null_resource.status"
    error: str | None = None
    deployment_id: int | None = None  # the plan deployment that found this


class WavePreviewView(View):
    number: int
    name: str
    envs: list[EnvPreviewView]


class PreviewView(View):
    """A rollout's blast radius, wave by wave, before anything is deployed."""

    module: str
    version: str
    plan: str
    waves: list[WavePreviewView]
    uncovered: list[str] = []  # use the module but no wave selects them
    planned: bool = True  # False: membership only (no preflight)
    destructive: list[str] = []  # "project/env: replace address"
    errors: list[str] = []  # "project/env: why it could not be planned"


class StartView(View):
    id: str
    preview: PreviewView
    warnings: list[str]


class SampleView(View):
    round: int
    status: str  # ok | breach | no_data | error | not_landed (taken before the new version reported: not counted)
    values: list[float]
    detail: str


class SubjectEvidence(View):
    """What a gate saw for one environment (or the wave): every sample, its verdict, where to look."""

    subject: str
    query: str
    verdict: str
    reason: str
    samples: list[SampleView]
    failures: int
    links: dict[str, str] = {}  # prometheus / grafana pages for the query over the wave's window
    baseline: bool = False  # a compare gate's baseline environment (still on the previous version)


class CohortView(View):
    envs: int
    samples: int
    median: float | None
    mean: float | None


class ComparisonView(View):
    """A compare gate's statistics: both cohorts, the Mann-Whitney U test, the effect size; `reason` is the
    decision in words."""

    new: CohortView
    baseline: CohortView
    better: str  # lower | higher
    tolerance: float  # in the metric's unit
    confidence: float
    statistic: float | None
    p_value: float | None
    effect_size: float | None  # rank-biserial: +1 every new sample worse than every baseline one, -1 better
    median_change: float | None
    relative_change: float | None


class GateDetails(View):
    reason: str
    subjects: list[SubjectEvidence] = []
    baked_seconds: int | None = None
    comparison: ComparisonView | None = None


class GateView(View):
    index: int
    kind: str  # bake | prometheus | compare | approval
    spec: str
    result: str | None  # passed | failed | inconclusive | approved | None (pending)
    at: datetime | None
    details: GateDetails | None = None
    approved_by: list[str] = []
    min: float | None = None  # a prometheus gate's bounds: every sample must stay within them
    max: float | None = None
    four_eyes: bool = False  # an approval gate the rollout's starter (or last retargeter) may not approve


class RolloutEnvView(View):
    env: str
    status: str
    version: str
    previous_version: str
    changed: bool
    deployment_id: str | None
    reason: str
    retry_at: datetime | None = None
    waiting_for_runner: str | None = None  # the runner pool whose workers have not taken its deployment yet


class EnvQuery(View):
    """Which environments a rollout view lists: filters (every given one must match), a page size and where
    the page starts."""

    wave: str | None = None  # a wave's 1-based number or its name
    state: str | None = None  # an environment status: pending, deploying, succeeded, failed, errored...
    project: str | None = None
    env_type: str | None = None
    labels: dict[str, str] = {}  # {"region": "eu"}: the environment's labels as the store holds them now
    limit: int | None = None  # at most this many environments (all waves together); None: every one
    after: str | None = None  # the page starts after this environment (`project/env`), as `next_cursor` says
    summary: bool = False  # counts per wave and status only, no environment list


class AlertView(View):
    """An alert a wave received (gate evidence): the alert as Alertmanager sent it, and what it did."""

    name: str
    env: str
    labels: dict[str, str]
    starts_at: datetime | None
    generator_url: str
    received_at: datetime
    effect: str  # failed_wave | paused | recorded
    run: int


class WaveView(View):
    number: int
    name: str
    phase: str
    reason: str
    max_parallel: int
    failure_tolerance: str
    on_failure: str
    auto_promote: bool
    overridden_by: str | None
    verify_started_at: datetime | None
    gates: list[GateView]
    counts: dict[str, int]  # environments of the wave by status
    envs: list[RolloutEnvView]  # those the query selected, in membership order
    hold: str = ""  # why its deploys may not start now (a freeze, outside its change windows)
    hold_until: datetime | None = None  # when that may end by itself
    change_windows: list[str] = []  # "mon-fri 09:00-17:00 Europe/Berlin"
    alerts: list[AlertView] = []


class LogLineView(View):
    at: datetime
    kind: str
    summary: str
    actor: str | None = None


class RolloutView(View):
    """Everything about one rollout a person or a tool needs to decide the next step."""

    id: str
    module: str
    version: str
    plan: str
    phase: str
    reason: str
    started_by: str
    created_at: datetime
    current_wave: int
    waiting_for: str | None
    since: datetime
    engine: str | None  # who drives it now
    waves: list[WaveView]
    not_covered: list[str]  # environments on the module no wave holds (left out of the summary and later pages)
    audit: list[LogLineView]  # created, commands and refusals
    events: list[LogLineView]  # the latest log lines
    preflight: dict[str, Any] | None
    next_cursor: str | None = None  # more environments match: ask again with `after=next_cursor`
    freezes: list[FreezeView] = []  # the freezes in force now (every status shows them)


class RolloutSummaryView(View):
    id: str
    module: str
    version: str
    plan: str
    phase: str
    created_by: str
    created_at: datetime


class RetargetView(View):
    """A retargeted rollout and the warnings of the new version's preflight."""

    rollout: RolloutView
    warnings: list[str]
