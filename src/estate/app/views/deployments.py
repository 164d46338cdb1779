"""Views of deployments: records, event logs, drift reports, batch results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from estate.app.views import View


class ChangeView(View):
    address: str
    action: str  # create | update | delete | replace | read


class DeploymentPlanView(View):
    add: int
    change: int
    remove: int
    changes: list[ChangeView]
    destructive: list[ChangeView]
    drift: list[ChangeView]


class StatusChangeView(View):
    status: str
    at: datetime


class DeploymentSummaryView(View):
    id: int
    env: str
    kind: str  # plan | deploy | rollback
    status: str  # queued | planning | applying | succeeded | failed | errored | interrupted | cancelled
    reason: str | None
    triggered_by: str
    rollout_id: str | None
    versions: dict[str, str]  # resource alias -> module version
    created_at: datetime
    updated_at: datetime
    retryable: bool = False
    retried_by: int | None = None
    pool: str | None = None  # the runner pool it was sent to (Temporal engine)


class DeploymentView(DeploymentSummaryView):
    """Everything recorded about a deployment except its event log; sensitive outputs masked."""

    tool_version: str | None
    graph: dict[str, Any]
    transitions: list[StatusChangeView]
    plan: DeploymentPlanView | None
    plan_source: str | None = None  # the plan it applied: a saved plan of a plan deployment, or its own and why
    outputs: dict[str, Any]


class BatchView(View):
    """Deployments run together; `problem` says what went wrong with any of them (None: all succeeded)."""

    deployments: list[DeploymentView]
    problem: str | None = None
    warnings: list[str] = []  # e.g. a deployed version is deprecated


class DriftView(View):
    env: str
    deployment: int
    status: str
    reason: str | None
    drifted: bool
    changes: list[ChangeView]
    out_of_band: list[ChangeView]  # changed outside Terraform


class DriftReport(View):
    envs: list[DriftView]
    problem: str | None = None


class LogEvent(View):
    seq: int
    text: str  # the event as people read it
    event: dict[str, Any]  # the raw JSON event (Terraform's `-json` line, or Estate's own step)


class LogChunk(View):
    """Events of a deployment's log after a sequence number, and whether the deployment has ended."""

    events: list[LogEvent]
    done: bool
