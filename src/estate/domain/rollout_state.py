"""Rollout state: the phases and the frozen data the rollout state machine (`estate.domain.rollout`) reads.

One `RolloutState` is the whole truth about a rollout: its spec (module, target version, plan, frozen
wave membership, who started it), the phase of the rollout and of every wave, and per environment
the version it is on as far as the rollout knows, its own previous version and whether this rollout
changed it. It is a tree of frozen dataclasses that `estate.store.codec` round-trips as JSON.

Wave numbers are 1-based, as users see them (`rollout rollback R --wave 1`); gate indexes are
0-based positions in the wave's `gates`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from estate.domain.deployments import DeploymentKind  # a rollout runs DEPLOY or ROLLBACK
from estate.domain.gate_eval import Judgement, Sample, Verdict
from estate.domain.ids import EnvRef
from estate.domain.plans import ApprovalGate, RolloutPlan, Wave


class RolloutPhase(StrEnum):
    """Where the rollout as a whole stands; derived from the current wave unless paused or ended."""

    PENDING = "pending"  # created, not started yet
    RUNNING = "running"  # the current wave is deploying, verifying or rolling back
    PAUSED = "paused"  # a human paused it: nothing new starts, in-flight work finishes
    AWAITING_APPROVAL = "awaiting_approval"  # the current wave's entry approval gate waits for an approver
    AWAITING_PROMOTION = "awaiting_promotion"  # the current wave passed its exit gates; waits for `promote`
    HALTED = "halted"  # the current wave failed or a gate was inconclusive: needs a human
    FAILED = "failed"  # the current wave was rolled back: retarget and rerun, or abort
    COMPLETED = "completed"  # every wave succeeded; the target version is final
    ABORTED = "aborted"  # a human ended it; nothing new starts

    @property
    def is_terminal(self) -> bool:
        """No command can move the rollout on from here."""
        return self in (RolloutPhase.COMPLETED, RolloutPhase.ABORTED)


class WavePhase(StrEnum):
    """Where one wave stands in its current run."""

    PENDING = "pending"  # not reached yet (or reset by a rerun/rollback of an earlier wave)
    AWAITING_APPROVAL = "awaiting_approval"  # entry gate: deploys nothing until every approval gate is approved
    DEPLOYING = "deploying"  # starting deployments, at most `max_parallel` in flight
    VERIFYING = "verifying"  # every deployment finished; exit gates run one after the other
    AWAITING_PROMOTION = "awaiting_promotion"  # exit gates passed (or a human overrode); waits for `promote`
    SUCCEEDED = "succeeded"  # promoted (or auto-promoted, or the last wave passed)
    FAILED = "failed"  # too many failures, a failed gate (on_failure halt) or an incomplete rollback: needs a human
    INCONCLUSIVE = "inconclusive"  # a gate could not decide; never a pass: waits for a human
    ERRORED = "errored"  # a deployment could not be attempted (not a failure of the change): waits for a human
    ROLLING_BACK = "rolling_back"  # restoring each environment this rollout changed
    ROLLED_BACK = "rolled_back"  # every environment this rollout changed is back on its previous version

    @property
    def is_terminal(self) -> bool:
        """Finished; only a rerun starts the wave again."""
        return self in (WavePhase.SUCCEEDED, WavePhase.ROLLED_BACK)

    @property
    def halted(self) -> bool:
        """Stopped on a failure, waiting for a human (override, rollback, rerun or abort)."""
        return self in (WavePhase.FAILED, WavePhase.INCONCLUSIVE, WavePhase.ERRORED)


class EnvStatus(StrEnum):
    """Where one environment stands in this rollout."""

    PENDING = "pending"  # waits for its wave to deploy it
    DEPLOYING = "deploying"  # a deployment to the target version is in flight
    SUCCEEDED = "succeeded"  # on the target version it was deployed with
    FAILED = "failed"  # its last deployment (deploy or rollback) failed
    ERRORED = "errored"  # its last deployment could not be attempted for a technical reason (never a failure)
    ROLLING_BACK = "rolling_back"  # a deployment back to its previous version is in flight
    ROLLED_BACK = "rolled_back"  # back on its previous version
    SKIPPED = "skipped"  # left out: its wave was accepted by override, rolled back or aborted first

    @property
    def is_terminal(self) -> bool:
        return self not in (EnvStatus.PENDING, EnvStatus.DEPLOYING, EnvStatus.ROLLING_BACK)

    @property
    def in_flight(self) -> bool:
        return self in (EnvStatus.DEPLOYING, EnvStatus.ROLLING_BACK)


@dataclass(frozen=True)
class EnvState:
    """One environment of the rollout: its versions, status and latest deployment."""

    env: EnvRef
    wave: int
    previous_version: str  # the version it was on before this rollout touched it
    version: str  # the version it is on as far as the rollout knows
    status: EnvStatus = EnvStatus.PENDING
    changed: bool = False  # this rollout started a deploy here that no rollback has undone
    attempts: int = 0  # deployments this rollout started here (numbers action keys)
    key: str | None = None  # action key of the deployment in flight
    kind: DeploymentKind | None = None  # kind of the latest deployment
    target: str | None = None  # version the latest deployment applies
    deployment_id: str | None = None  # the engine's id of the latest deployment
    reason: str = ""
    retry_at: datetime | None = None  # after a transient error: pending, but not started before this
    errors: int = 0  # transient errors in a row (the back-off grows with them)


@dataclass(frozen=True)
class GateRecord:
    """The verdict of one exit gate in the wave's current run; `at` is when it was reached (the evidence
    itself carries no clock reading, so equal evidence compares equal)."""

    gate_index: int
    verdict: Verdict
    at: datetime
    reason: str = ""
    judgement: Judgement | None = None  # a Prometheus gate's evidence, per subject and sample


@dataclass(frozen=True)
class Approval:
    """Someone approved an entry approval gate of the wave's current run."""

    gate_index: int
    actor: str
    at: datetime


@dataclass(frozen=True)
class WaveState:
    """One wave: its frozen members and where its current run stands."""

    number: int
    envs: tuple[EnvRef, ...]
    phase: WavePhase = WavePhase.PENDING
    run: int = 0  # times the wave was entered (numbers gate keys)
    verify_started_at: datetime | None = None  # when its deployments finished; bake counts from here
    gate_index: int | None = None  # the exit gate being evaluated
    gate_started_at: datetime | None = None  # when that evaluation was asked for
    rounds: int = 0  # sampling rounds of that gate taken so far
    samples: tuple[Sample, ...] = ()  # what those rounds saw
    gates: tuple[GateRecord, ...] = ()
    approvals: tuple[Approval, ...] = ()
    overridden_by: str | None = None  # who accepted it despite a failure or inconclusive gate
    rollback_queue: tuple[EnvRef, ...] = ()  # changed environments waiting for their rollback to start
    reason: str = ""

    def record(self, gate_index: int) -> GateRecord | None:
        return next((g for g in self.gates if g.gate_index == gate_index), None)


@dataclass(frozen=True)
class RolloutState:
    """Everything the rollout state machine knows; `decide` returns a new one for every event."""

    id: str
    module: str
    version: str  # the target version; `retarget` changes what later work uses
    plan: RolloutPlan
    started_by: str
    created_at: datetime
    waves: tuple[WaveState, ...]
    envs: tuple[EnvState, ...]
    phase: RolloutPhase = RolloutPhase.PENDING
    current: int = 1  # number of the current wave
    started_at: datetime | None = None
    reason: str = ""
    retargeted_by: str | None = None  # who last chose another target version (four-eyes excludes them too)
    # Where each environment sits in `envs` (derived, never stored). Membership is frozen, so every state
    # of a rollout shares one index; `replace()` hands it on, which keeps each event O(1) in the estate size.
    _index: dict[EnvRef, int] | None = field(default=None, compare=False, repr=False, metadata={"derived": True})

    @property
    def index(self) -> dict[EnvRef, int]:
        if self._index is None:
            object.__setattr__(self, "_index", {e.env: i for i, e in enumerate(self.envs)})
        assert self._index is not None
        return self._index

    def spec(self, number: int) -> Wave:
        return self.plan.waves[number - 1]

    def wave(self, number: int) -> WaveState:
        return self.waves[number - 1]

    @property
    def current_wave(self) -> WaveState:
        return self.waves[self.current - 1]

    def env(self, ref: EnvRef) -> EnvState | None:
        position = self.index.get(ref)
        return None if position is None else self.envs[position]

    def envs_of(self, number: int) -> tuple[EnvState, ...]:
        """The wave's environments, in its frozen membership order (`envs` holds them in that order)."""
        members = self.wave(number).envs
        if not members:
            return ()
        start = self.index[members[0]]
        return self.envs[start : start + len(members)]

    def with_env(self, env: EnvState) -> RolloutState:
        """This state with `env` replacing the environment of the same name."""
        i = self.index[env.env]
        return replace(self, envs=(*self.envs[:i], env, *self.envs[i + 1 :]))

    def in_flight(self, number: int) -> int:
        return sum(1 for e in self.envs_of(number) if e.status.in_flight)


def approval_gates(wave: Wave) -> tuple[tuple[int, ApprovalGate], ...]:
    """The wave's entry approval gates with their indexes."""
    return tuple((i, g) for i, g in enumerate(wave.gates) if isinstance(g, ApprovalGate))


def exit_gate_indexes(wave: Wave) -> tuple[int, ...]:
    """Indexes of the wave's exit gates (bake, prometheus), in the order they run."""
    return tuple(i for i, g in enumerate(wave.gates) if not isinstance(g, ApprovalGate))


def new_rollout(
    *,
    rollout_id: str,
    module: str,
    version: str,
    plan: RolloutPlan,
    membership: Sequence[Sequence[EnvRef]],
    previous_versions: Mapping[EnvRef, str],
    started_by: str,
    now: datetime,
) -> RolloutState:
    """A PENDING rollout; raise ValueError when membership and versions do not fit the plan."""
    if not plan.waves:
        raise ValueError(f"plan '{plan.id}' has no waves")
    if len(membership) != len(plan.waves):
        raise ValueError(f"membership has {len(membership)} waves, plan '{plan.id}' has {len(plan.waves)}")
    seen: set[EnvRef] = set()
    for refs in membership:
        for ref in refs:
            if ref in seen:
                raise ValueError(f"environment {ref} is in more than one wave")
            if ref not in previous_versions:
                raise ValueError(f"environment {ref} has no previous version")
            seen.add(ref)
    waves = tuple(WaveState(number=n, envs=tuple(refs)) for n, refs in enumerate(membership, start=1))
    envs = tuple(
        EnvState(env=ref, wave=n, previous_version=previous_versions[ref], version=previous_versions[ref])
        for n, refs in enumerate(membership, start=1)
        for ref in refs
    )
    return RolloutState(
        id=rollout_id,
        module=module,
        version=version,
        plan=plan,
        started_by=started_by,
        created_at=now,
        waves=waves,
        envs=envs,
    )
