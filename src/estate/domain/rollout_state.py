"""Rollout state: the phases and the frozen data the rollout state machine (`estate.domain.rollout`) reads.

One `RolloutState` is the whole truth about a rollout: its spec (module, target version, plan, frozen
wave membership, who started it), the phase of the rollout and of every wave, and per environment
the version it is on as far as the rollout knows, its own previous version and whether this rollout
changed it. It is a tree of frozen dataclasses that `estate.store.codec` round-trips as JSON.

The environments sit in an `EnvTable`: a persistent map (a HAMT) in membership order that also keeps,
per wave, how many environments are in each status and where the next ones to start are. Replacing one
environment costs O(log n) and shares everything else, so a decision about a few environments costs
O(those environments) whatever the size of the rollout (docs/decisions/0010-per-environment-rollout-state.md).

Wave numbers are 1-based, as users see them (`rollout rollback R --wave 1`); gate indexes are
0-based positions in the wave's `gates`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import overload

from immutables import Map

from estate.domain.alerts import FiredAlert
from estate.domain.deployments import DeploymentKind  # a rollout runs DEPLOY or ROLLBACK
from estate.domain.freezes import Freeze
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
    queued: bool = False  # waits in its wave's rollback queue (the queue keeps membership order)
    env_type: str = ""  # what freezes are scoped by
    finished_at: datetime | None = None  # when its latest deploy succeeded: its gates' window starts here

    @property
    def waiting(self) -> bool:
        """In a back-off after a transient error."""
        return self.retry_at is not None


@dataclass(frozen=True)
class GateRecord:
    """The verdict of one exit gate in the wave's current run; `at` is when it was reached (the evidence
    itself carries no clock reading, so equal evidence compares equal)."""

    gate_index: int
    verdict: Verdict
    at: datetime
    reason: str = ""
    judgement: Judgement | None = None  # a metric gate's evidence, per subject and sample


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
    env_types: frozenset[str] = frozenset()  # of its members (empty: not known, for rollouts older than this)
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
    reason: str = ""
    hold: str = ""  # why its deploys may not start now (a freeze, outside its change windows); "" when none
    hold_until: datetime | None = None  # when the hold may end by itself
    alerts: tuple[FiredAlert, ...] = ()  # alerts received for its environments, every run (gate evidence)

    def record(self, gate_index: int) -> GateRecord | None:
        return next((g for g in self.gates if g.gate_index == gate_index), None)


class EnvTable(Sequence[EnvState]):
    """The environments of a rollout, wave by wave in membership order; immutable.

    `set` returns a new table sharing all but the replaced environment (a HAMT, O(log n)) and keeps what
    the state machine asks about a wave up to date as it goes: how many environments are in each status
    (`counts`), how many wait in the rollback queue (`queued`), and which are next to start (`next_up`:
    a cursor past the environments already dealt with, plus the few in a back-off). Membership is frozen:
    every table of a rollout shares one index of positions.
    """

    __slots__ = ("_counts", "_cursors", "_map", "_members", "_waiting")

    _members: _Members
    _map: Map[EnvRef, EnvState]
    _counts: dict[int, dict[EnvStatus | str, int]]
    _cursors: dict[tuple[int, bool], int]  # (wave, rollback?) -> no fresh candidate before this position
    _waiting: Map[EnvRef, None]  # environments in a back-off (few)

    item_type = EnvState  # for `estate.store.codec`: stored as the list of its environments

    @classmethod
    def from_items(cls, envs: Iterable[EnvState]) -> EnvTable:
        return cls(envs)

    def __init__(self, envs: Iterable[EnvState] = ()) -> None:
        items = tuple(envs)
        self._members = _Members.of(items)
        self._map = Map((e.env, e) for e in items)
        if len(self._map) != len(items):
            raise ValueError("an environment is in the rollout twice")
        self._counts = {}
        for e in items:
            _count(self._counts, e, 1)
        self._cursors = {}
        self._waiting = Map((e.env, None) for e in items if e.waiting)

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._members.order)

    @overload
    def __getitem__(self, index: int) -> EnvState: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[EnvState, ...]: ...
    def __getitem__(self, index: int | slice) -> EnvState | tuple[EnvState, ...]:
        if isinstance(index, slice):
            return tuple(self._map[r] for r in self._members.order[index])
        return self._map[self._members.order[index]]

    def __iter__(self) -> Iterator[EnvState]:
        found = self._map
        return (found[r] for r in self._members.order)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, EnvState) and self._map.get(value.env) == value

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, EnvTable):
            return NotImplemented
        return self._members.order == other._members.order and self._map == other._map

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EnvTable({len(self)} environments)"

    def get(self, ref: EnvRef) -> EnvState | None:
        return self._map.get(ref)

    def position(self, ref: EnvRef) -> int:
        """Where `ref` is in membership order (0-based, over every wave)."""
        return self._members.position[ref]

    def in_wave(self, number: int) -> tuple[EnvState, ...]:
        start, end = self._members.bounds(number)
        found = self._map
        return tuple(found[r] for r in self._members.order[start:end])

    def counts(self, number: int) -> Mapping[EnvStatus, int]:
        """How many environments of wave `number` are in each status (statuses with none are left out)."""
        counts = self._counts.get(number, {})
        return MappingProxyType({s: n for s, n in counts.items() if isinstance(s, EnvStatus) and n})

    def count(self, number: int, *statuses: EnvStatus) -> int:
        counts = self._counts.get(number, {})
        return sum(counts.get(s, 0) for s in statuses)

    def queued(self, number: int) -> int:
        """How many environments of wave `number` wait in its rollback queue."""
        return self._counts.get(number, {}).get(_QUEUED, 0)

    def waiting(self) -> tuple[EnvState, ...]:
        """The environments in a back-off, in membership order."""
        position = self._members.position
        return tuple(self._map[r] for r in sorted(self._waiting, key=position.__getitem__))

    def next_up(self, number: int, now: datetime, limit: int, *, rollback: bool = False) -> list[EnvState]:
        """The first `limit` environments of wave `number`, in membership order, that may start now: pending
        ones (`rollback`: those in the rollback queue) not in a back-off that has yet to end.

        Costs O(limit + the environments passed over since the last call): the cursor only ever moves past
        environments that are not candidates, and `set` moves it back when one becomes a candidate again.
        """
        if limit <= 0:
            return []
        start, end = self._members.bounds(number)
        order, found = self._members.order, self._map
        key = (number, rollback)
        cursor = max(self._cursors.get(key, start), start)
        fresh: list[EnvState] = []
        i, advancing = cursor, True
        while i < end and len(fresh) < limit:
            env = found[order[i]]
            if _candidate(env, rollback) and not env.waiting:
                fresh.append(env)
                advancing = False
            elif advancing:
                cursor = i + 1
            i += 1
        self._cursors[key] = cursor  # a memo: the table's content is unchanged
        due = [
            e
            for e in (found[r] for r in self._waiting)
            if e.wave == number and _candidate(e, rollback) and e.retry_at is not None and e.retry_at <= now
        ]
        if not due:
            return fresh
        position = self._members.position
        return sorted([*due, *fresh], key=lambda e: position[e.env])[:limit]

    # -- changing ------------------------------------------------------------------------------

    def set(self, env: EnvState) -> EnvTable:
        """This table with `env` replacing the environment of the same name (itself if nothing differs)."""
        old = self._map.get(env.env)
        if old is None:
            raise KeyError(f"{env.env} is not in this rollout")
        if old == env:
            return self
        if old.wave != env.wave:
            raise ValueError(f"{env.env} cannot move from wave {old.wave} to wave {env.wave}")
        table = object.__new__(EnvTable)
        table._members = self._members
        table._map = self._map.set(env.env, env)
        table._counts = self._counts
        if old.status is not env.status or old.queued != env.queued:
            table._counts = {**self._counts, env.wave: dict(self._counts.get(env.wave, {}))}
            _count(table._counts, old, -1)
            _count(table._counts, env, 1)
        table._cursors = dict(self._cursors)
        position = self._members.position[env.env]
        for rollback in (False, True):
            key = (env.wave, rollback)
            if _candidate(env, rollback) and not env.waiting and key in table._cursors:
                table._cursors[key] = min(table._cursors[key], position)
        table._waiting = self._waiting
        if old.waiting != env.waiting:
            table._waiting = self._waiting.set(env.env, None) if env.waiting else self._waiting.delete(env.env)
        return table


_QUEUED = "queued"  # `_counts` key: environments waiting in the rollback queue


def _count(counts: dict[int, dict[EnvStatus | str, int]], env: EnvState, delta: int) -> None:
    wave = counts.setdefault(env.wave, {})
    wave[env.status] = wave.get(env.status, 0) + delta
    if env.queued:
        wave[_QUEUED] = wave.get(_QUEUED, 0) + delta


def _candidate(env: EnvState, rollback: bool) -> bool:
    return env.queued if rollback else env.status is EnvStatus.PENDING


@dataclass(frozen=True)
class _Members:
    """A rollout's frozen membership: every environment in order, where each sits, where each wave starts."""

    order: tuple[EnvRef, ...]
    position: Mapping[EnvRef, int]
    starts: Mapping[int, tuple[int, int]]  # wave number -> [start, end) in `order`

    @classmethod
    def of(cls, envs: Sequence[EnvState]) -> _Members:
        starts: dict[int, tuple[int, int]] = {}
        for i, e in enumerate(envs):
            if e.wave in starts and starts[e.wave][1] != i:
                raise ValueError(f"the environments of wave {e.wave} are not together in membership order")
            starts[e.wave] = (starts[e.wave][0] if e.wave in starts else i, i + 1)
        return cls(tuple(e.env for e in envs), {e.env: i for i, e in enumerate(envs)}, starts)

    def bounds(self, number: int) -> tuple[int, int]:
        return self.starts.get(number, (0, 0))


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
    envs: EnvTable
    phase: RolloutPhase = RolloutPhase.PENDING
    current: int = 1  # number of the current wave
    started_at: datetime | None = None
    reason: str = ""
    retargeted_by: str | None = None  # who last chose another target version (four-eyes excludes them too)
    freezes: tuple[Freeze, ...] = ()  # the freezes in force, as the engine last read them

    def spec(self, number: int) -> Wave:
        return self.plan.waves[number - 1]

    def wave(self, number: int) -> WaveState:
        return self.waves[number - 1]

    @property
    def current_wave(self) -> WaveState:
        return self.waves[self.current - 1]

    def env(self, ref: EnvRef) -> EnvState | None:
        return self.envs.get(ref)

    def envs_of(self, number: int) -> tuple[EnvState, ...]:
        """The wave's environments, in its frozen membership order."""
        return self.envs.in_wave(number)

    def with_env(self, env: EnvState) -> RolloutState:
        """This state with `env` replacing the environment of the same name."""
        envs = self.envs.set(env)
        return self if envs is self.envs else replace(self, envs=envs)

    def in_flight(self, number: int) -> int:
        return self.envs.count(number, EnvStatus.DEPLOYING, EnvStatus.ROLLING_BACK)


def approval_gates(wave: Wave) -> tuple[tuple[int, ApprovalGate], ...]:
    """The wave's entry approval gates with their indexes."""
    return tuple((i, g) for i, g in enumerate(wave.gates) if isinstance(g, ApprovalGate))


def exit_gate_indexes(wave: Wave) -> tuple[int, ...]:
    """Indexes of the wave's exit gates (bake, prometheus, compare), in the order they run."""
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
    env_types: Mapping[EnvRef, str] | None = None,
    freezes: Sequence[Freeze] = (),
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
    types = env_types or {}
    waves = tuple(
        WaveState(number=n, envs=tuple(refs), env_types=frozenset(types.get(r, "") for r in refs))
        for n, refs in enumerate(membership, start=1)
    )
    envs = EnvTable(
        EnvState(
            env=ref,
            wave=n,
            previous_version=previous_versions[ref],
            version=previous_versions[ref],
            env_type=types.get(ref, ""),
        )
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
        freezes=tuple(freezes),
    )
