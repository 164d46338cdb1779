"""Deployments as records: kinds, statuses and their transitions, plan summaries, outputs.

Pure data; the store persists them (`estate.store.deployments`) and the runner drives them
(`estate.runners.service`). Status moves only along `TRANSITIONS`:

    queued -> planning -> applying -> succeeded
       |         |  \\________________/    ^
       |         |   (kind plan: planning -> succeeded)
       +---------+---------+-> failed | errored | cancelled
                 +---------+-> interrupted (the process running it died; retried as a new deployment)

Failed, errored and interrupted are kept apart, as Kargo keeps Failed apart from Errored: only *failed*
says something about the change itself, so only failed deployments count against a wave's tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from estate.domain.graph import ResolvedGraph
from estate.domain.ids import EnvRef
from estate.errors import ConflictError

JSON = Any
SENSITIVE = "(sensitive)"


class DeploymentKind(StrEnum):
    """What a deployment does."""

    PLAN = "plan"  # plan only, nothing changes
    DEPLOY = "deploy"  # plan, then apply that saved plan
    ROLLBACK = "rollback"  # deploy the resolved graph of an earlier deployment


class DeploymentStatus(StrEnum):
    """Where a deployment is; persisted before each step starts."""

    QUEUED = "queued"
    PLANNING = "planning"
    APPLYING = "applying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # Terraform ran and the change failed (plan or apply error, timeout)
    ERRORED = "errored"  # something technical prevented the attempt (binary missing, environment busy, a bug)
    INTERRUPTED = "interrupted"  # the process running it died mid-run; `retried_by` names the run that redid it
    CANCELLED = "cancelled"  # stopped on request before it finished, or never started

    @property
    def is_terminal(self) -> bool:
        return self not in (DeploymentStatus.QUEUED, DeploymentStatus.PLANNING, DeploymentStatus.APPLYING)

    @property
    def is_active(self) -> bool:
        """A process is (or was, if it died) running Terraform for it."""
        return self in (DeploymentStatus.PLANNING, DeploymentStatus.APPLYING)


_S = DeploymentStatus
_ENDS = frozenset({_S.FAILED, _S.ERRORED, _S.CANCELLED})
TRANSITIONS: Mapping[DeploymentStatus, frozenset[DeploymentStatus]] = MappingProxyType(
    {
        _S.QUEUED: frozenset({_S.PLANNING}) | _ENDS,
        _S.PLANNING: frozenset({_S.APPLYING, _S.SUCCEEDED, _S.INTERRUPTED}) | _ENDS,
        _S.APPLYING: frozenset({_S.SUCCEEDED, _S.INTERRUPTED}) | _ENDS,
        _S.SUCCEEDED: frozenset(),
        _S.FAILED: frozenset(),
        _S.ERRORED: frozenset(),
        _S.INTERRUPTED: frozenset(),
        _S.CANCELLED: frozenset(),
    }
)


class TransitionRefused(ConflictError):
    """A status change that `TRANSITIONS` does not allow (e.g. out of a terminal status)."""


@dataclass(frozen=True)
class StatusChange:
    """The deployment entered `status` at `at`."""

    status: DeploymentStatus
    at: datetime


@dataclass(frozen=True)
class PlannedChange:
    """One resource change of a plan: `action` is create, update, delete, replace, read, noop."""

    address: str
    action: str

    @property
    def destructive(self) -> bool:
        return self.action in ("delete", "replace")


@dataclass(frozen=True)
class PlanSummary:
    """What a plan would do; `drift` lists resources changed outside Terraform."""

    add: int = 0
    change: int = 0
    remove: int = 0
    changes: tuple[PlannedChange, ...] = ()
    drift: tuple[PlannedChange, ...] = ()

    @property
    def destructive(self) -> tuple[PlannedChange, ...]:
        return tuple(c for c in self.changes if c.destructive)

    @property
    def has_changes(self) -> bool:
        return bool(self.add or self.change or self.remove)

    @property
    def drifted(self) -> bool:
        """The environment differs from its configuration: the plan would change it, or it changed outside."""
        return self.has_changes or bool(self.drift)

    def __str__(self) -> str:
        return f"{self.add} to add, {self.change} to change, {self.remove} to destroy"


@dataclass(frozen=True)
class OutputValue:
    """A root output; a sensitive one never carries its value (it is encrypted apart, if at all)."""

    sensitive: bool
    value: JSON = None

    def display(self) -> JSON:
        return SENSITIVE if self.sensitive else self.value


@dataclass(frozen=True)
class Deployment:
    """One Terraform run for one environment, as recorded."""

    id: int
    env: EnvRef
    kind: DeploymentKind
    status: DeploymentStatus
    triggered_by: str
    graph: ResolvedGraph
    transitions: tuple[StatusChange, ...]
    reason: str | None = None
    rollout_id: str | None = None
    plan_summary: PlanSummary | None = None
    outputs: Mapping[str, OutputValue] = field(default_factory=lambda: MappingProxyType({}))
    tool_version: str | None = None
    retryable: bool = False  # errored for a reason that may pass by itself (environment busy, store unavailable)
    retried_by: int | None = None  # the deployment that redid this interrupted one
    holder: str | None = None  # the process that runs (or will run) it: `host:pid`
    apply_plan: int | None = None  # a deploy: the plan deployment whose saved plan to apply if still valid
    plan_source: str | None = None  # how the plan it applied was made ("saved plan of deployment 12", ...)
    pool: str | None = None  # the runner pool it was sent to (Temporal engine); None: the local runner

    @property
    def created_at(self) -> datetime:
        return self.transitions[0].at

    @property
    def updated_at(self) -> datetime:
        return self.transitions[-1].at

    def advance(self, status: DeploymentStatus, now: datetime, reason: str | None = None) -> Deployment:
        """This deployment moved to `status` at `now`; TransitionRefused if `TRANSITIONS` forbids it."""
        if status not in TRANSITIONS[self.status]:
            raise TransitionRefused(f"deployment {self.id} cannot go from {self.status} to {status}")
        return replace(
            self,
            status=status,
            transitions=(*self.transitions, StatusChange(status, now)),
            reason=reason if reason is not None else self.reason,
        )
