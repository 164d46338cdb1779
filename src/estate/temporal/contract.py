"""What the rollout workflow, its activities and its clients exchange: names, inputs and results.

Pure data (frozen dataclasses of the domain's types, carried by `estate.temporal.converter`), so the
workflow sandbox imports it without the store or the runners. A state is never sent whole to an activity:
the workflow projects it into the store as a `StateDelta` (what changed since the last projection).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from datetime import datetime

from estate.domain.deployments import DeploymentStatus
from estate.domain.freezes import Freeze
from estate.domain.gate_eval import Sample
from estate.domain.ids import EnvRef
from estate.domain.rollout_events import (
    Command,
    Finalize,
    MarkDefective,
    SampleGate,
    StartDeployment,
    Transition,
)
from estate.domain.rollout_events import (
    Queued as QueuedItem,
)
from estate.domain.rollout_state import EnvState, EnvTable, RolloutState, WaveState

WORKFLOW = "estate.rollout"
PREPARE = "estate.prepare"
PROJECT = "estate.project"
SAMPLE = "estate.sample"
FINALIZE = "estate.finalize"
POLL = "estate.poll"
NUDGE = "nudge"  # the signal that makes the workflow read the store's inbox and the freezes now
RUN_DEPLOYMENT = "estate.run_deployment"
REFUSED = "Refused"  # the type of the ApplicationError an Update's validator raises


def workflow_id(task_queue: str, rollout_id: str) -> str:
    """One estate's rollouts are told apart from another's on a shared namespace by their task queue."""
    return f"{task_queue}/rollout/{rollout_id}"


def pool_queue(task_queue: str, pool: str) -> str:
    """The task queue a runner pool's workers poll for Terraform runs."""
    return f"{task_queue}-pool-{pool}"


@dataclass(frozen=True)
class Limits:
    """How one workflow run stays inside Temporal's per-execution limits (2,000 pending activities, 51,200
    history events): deployments scheduled at once, and history length before continuing as new."""

    max_pending: int = 500
    continue_after: int = 8_000  # also when Temporal suggests it (4,096 events or 4 MiB by default)
    heartbeat_seconds: float = 30.0  # a runner that stops heartbeating this long is presumed dead
    run_timeout_seconds: float = 4 * 3600.0  # one Terraform run; the runner's own timeout is shorter
    turn_seconds: float = 0.5  # after a result arrives, wait this long for more before deciding them together
    poll_seconds: float = 30.0  # the store's inbox (alerts) and the freezes are read this often, and when nudged


@dataclass(frozen=True)
class Queued:
    """What the store's inbox holds for the rollout: the `Start` that `RolloutStore.create` queued, an alert
    that Alertmanager delivered."""

    id: int
    command: QueuedItem


@dataclass(frozen=True)
class RolloutInput:
    """Start (or continue-as-new) a rollout's workflow: its state as last projected into the store."""

    state: RolloutState
    task_queue: str
    queued: tuple[Queued, ...] = ()
    applied: tuple[str, ...] = ()  # ids of the Updates already applied: a retried one is answered, not re-applied
    limits: Limits = Limits()
    run: int = 1


@dataclass(frozen=True)
class CommandRequest:
    """A command, as a Temporal Update whose id is `id`."""

    id: str
    command: Command


@dataclass(frozen=True)
class Progress:
    """What a client waits on: the phase, and whether nothing moves until a human acts (everything projected)."""

    phase: str
    settled: bool
    run: int


@dataclass(frozen=True)
class StateDelta:
    """What changed in a rollout's state since the last projection: its top-level fields (in `head`, whose
    waves and environments are empty), the waves that changed (without their frozen membership), and the
    environments that changed."""

    head: RolloutState
    waves: tuple[WaveState, ...]
    envs: tuple[EnvState, ...]


_MEMBERSHIP = ("waves", "envs")


def delta(before: RolloutState, after: RolloutState, touched: Collection[EnvRef]) -> StateDelta:
    """`after` relative to `before` (a state `decide` derived from it: unchanged waves are the same objects;
    `touched` names the environments the decisions may have changed, as `Decision.touched` does)."""
    waves = tuple(replace(w, envs=()) for w, old in zip(after.waves, before.waves, strict=True) if w is not old)
    position = after.envs.position
    changed = (after.env(r) for r in sorted(touched, key=position))  # membership order: the same on replay
    envs = tuple(e for e in changed if e is not None and e != before.env(e.env))
    return StateDelta(replace(after, waves=(), envs=EnvTable()), waves, envs)


def apply_delta(base: RolloutState, change: StateDelta) -> RolloutState:
    """`base` with `change` applied: the state the workflow holds, given the one it last projected."""
    head = {f.name: getattr(change.head, f.name) for f in fields(RolloutState) if f.name not in _MEMBERSHIP}
    waves = list(base.waves)
    for wave in change.waves:
        waves[wave.number - 1] = replace(wave, envs=base.waves[wave.number - 1].envs)
    envs = base.envs
    for env in change.envs:
        envs = envs.set(env)
    return replace(base, **head, waves=tuple(waves), envs=envs)


@dataclass(frozen=True)
class Decided:
    """A command (or an alert) the workflow decided on: accepted, or refused (ignored) with a reason; `queued`
    is its store inbox id."""

    command: QueuedItem
    refused: str | None = None
    queued: int | None = None


@dataclass(frozen=True)
class Projection:
    """Bring the store's read model up to the workflow's state, with the log of what led there."""

    rollout_id: str
    at: datetime
    delta: StateDelta
    decided: tuple[Decided, ...] = ()
    transitions: tuple[Transition, ...] = ()
    defective: tuple[MarkDefective, ...] = ()  # versions to mark defective, with the state that says why


@dataclass(frozen=True)
class PollRequest:
    """Read the store's inbox for the rollout (items not decided yet) and the freezes in force."""

    rollout_id: str


@dataclass(frozen=True)
class Polled:
    queued: tuple[Queued, ...]
    freezes: tuple[Freeze, ...]


@dataclass(frozen=True)
class PrepareRequest:
    """Find or create the deployment of each action (by key), and the runner pool of each."""

    rollout_id: str
    actions: tuple[StartDeployment, ...]
    create: bool = True  # False after an abort: nothing new is created


@dataclass(frozen=True)
class Prepared:
    """An action's deployment: None when none exists and none may be created."""

    key: str
    env: EnvRef
    deployment_id: int | None
    status: DeploymentStatus | None = None
    reason: str = ""
    retryable: bool = False
    pool: str = ""


@dataclass(frozen=True)
class PreparedBatch:
    items: tuple[Prepared, ...]


@dataclass(frozen=True)
class RunRequest:
    """Run a deployment on a worker of `pool`."""

    deployment_id: int
    pool: str
    key: str


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: succeeded, failed, errored, cancelled, or interrupted (redone as a new deployment)."""

    status: DeploymentStatus
    reason: str = ""
    retryable: bool = False


@dataclass(frozen=True)
class SampleRequest:
    rollout_id: str
    wave_name: str
    action: SampleGate


@dataclass(frozen=True)
class Samples:
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class FinalizeRequest:
    rollout_id: str
    action: Finalize
