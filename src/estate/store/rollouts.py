"""Rollout persistence: the rollout's state as a small rollout row, a row per wave and a row per environment;
the append-only event log, the command inbox, the pins and deployments a rollout's actions create, and the
lease that gives a rollout one driver.

`RolloutStore` is what the application layer uses (create, read a page of environments or the outline of a
rollout, queue commands); `RolloutSession` is what an engine holds while it drives one rollout (load once,
save with an optimistic revision, perform deployments idempotently by action key, finalize). A save writes
the rollout row, the waves that changed and the environments the decision touched: O(changed), whatever the
size of the rollout. Every method owns its transaction; ids come from the store (`counters`), never from
the caller.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from estate.domain import rollout_events as ev
from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus
from estate.domain.graph import ResolvedGraph, resolve_graph
from estate.domain.ids import EnvRef
from estate.domain.lifecycle import check_deployable
from estate.domain.pins import fold_pins
from estate.domain.rollout_state import EnvState, EnvStatus, EnvTable, RolloutPhase, RolloutState, WaveState
from estate.domain.rules import CONFIG_OWNER, ModuleRule
from estate.errors import ConflictError, EstateError, NotFoundError
from estate.store import deployments as deps
from estate.store import feed, holders, leases, lifecycle, tables
from estate.store.codec import decode, decode_as, encode, gc_paused
from estate.store.lookups import chunks, pair_in
from estate.store.repository import Store
from estate.store.rollout_tables import (
    rollout_deployments,
    rollout_envs,
    rollout_events,
    rollout_inbox,
    rollout_waves,
    rollouts,
)
from estate.store.rows import rule_slot

JSON = Any
_TERMINAL = [str(p) for p in RolloutPhase if p.is_terminal]


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout row, without its (large) state."""

    id: str
    module: str
    target_version: str
    plan_id: str
    phase: str
    revision: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    preflight: JSON = None


@dataclass(frozen=True)
class LogEntry:
    """One line of a rollout's append-only event log."""

    kind: str  # created | command | refused | phase | transition
    summary: str
    actor: str | None = None
    payload: Mapping[str, JSON] | None = None


@dataclass(frozen=True)
class RolloutOutline:
    """A rollout without its environments: what status and commands read, whatever the rollout's size."""

    record: RolloutRecord
    state: RolloutState  # no wave lists its members and `envs` is empty: read environments a page at a time
    counts: Mapping[int, Mapping[str, int]]  # wave number -> {environment status: how many}


@dataclass(frozen=True)
class EnvFilter:
    """Which environments of a rollout a page lists; every given field must match."""

    wave: int | None = None
    status: EnvStatus | None = None
    project: str | None = None
    env_type: str | None = None
    labels: Mapping[str, str] | None = None


class ModuleBusy(ConflictError):
    """Another rollout of the module is active: one rollout per module at a time."""

    def __init__(self, module: str, active: str) -> None:
        super().__init__(
            f"rollout {active} already owns module '{module}'",
            hint=f"finish or abort it first: estate rollout abort {active}",
        )


class StaleRevision(ConflictError):
    """Someone else saved the rollout since it was loaded (the lease should prevent this)."""


def lease_name(rollout_id: str) -> str:
    return f"rollout:{rollout_id}"


_SUMMARY_COLUMNS = [c for c in rollouts.c if c.name != "state"]


class RolloutStore:
    """Rollouts of one store, for the application layer."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        *,
        module: str,
        plan_id: str,
        actor: str,
        now: datetime,
        build: Callable[[str], RolloutState],
        preflight: JSON,
        created: LogEntry,
        plans: Mapping[EnvRef, int] | None = None,
    ) -> RolloutState:
        """Allocate the next id for `module`, build the rollout's state with it and record the rollout (its
        waves and environments, each linked to its preflight plan in `plans`), its first log entry and its
        `Start` command, in one transaction. ConflictError while another rollout of the module is active."""
        with self.store.begin() as conn:
            active = _active_for(conn, module)
            if active is not None:
                raise ModuleBusy(module, active)
            state = build(f"{module}-{_next_value(conn, f'rollout:{module}')}")
            conn.execute(
                insert(rollouts).values(
                    id=state.id,
                    module=module,
                    target_version=state.version,
                    plan_id=plan_id,
                    phase=str(state.phase),
                    state=_head(state),
                    preflight=preflight,
                    revision=0,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(rollout_waves),
                [{"rollout_id": state.id, "number": w.number, **_wave_row(state, w)} for w in state.waves],
            )
            rows = [
                {**_env_row(state.id, i, e), **_plan_link(plans, e.env, state.version)}
                for i, e in enumerate(state.envs)
            ]
            for start in range(0, len(rows), 5000):
                conn.execute(insert(rollout_envs), rows[start : start + 5000])
            _append(conn, state.id, [created], now)
            _enqueue(conn, state.id, ev.Start(actor), now)
        return state

    def record(self, rollout_id: str) -> RolloutRecord:
        with self.store.connect() as conn:
            return _load(conn, rollout_id)[0]

    def state(self, rollout_id: str) -> RolloutState:
        """The whole state, every environment included (an engine's read; status reads `outline` and `envs`)."""
        with gc_paused(), self.store.connect() as conn:
            return _load(conn, rollout_id)[1]

    def outline(self, rollout_id: str) -> RolloutOutline:
        with self.store.connect() as conn:
            record, state = _load(conn, rollout_id, with_envs=False)
            counts = {
                int(n): dict(c)
                for n, c in conn.execute(
                    select(rollout_waves.c.number, rollout_waves.c.counts).where(
                        rollout_waves.c.rollout_id == rollout_id
                    )
                )
            }
        return RolloutOutline(record, state, counts)

    def envs(
        self, rollout_id: str, where: EnvFilter, *, after: EnvRef | None = None, limit: int | None = None
    ) -> tuple[builtins.list[EnvState], bool]:
        """The environments `where` selects, in membership order, after `after` (NotFoundError if it is not in
        the rollout), at most `limit`; and whether more follow."""
        t = rollout_envs
        query = select(t).where(t.c.rollout_id == rollout_id)
        if where.wave is not None:
            query = query.where(t.c.wave == where.wave)
        if where.status is not None:
            query = query.where(t.c.status == str(where.status))
        if where.project is not None:
            query = query.where(t.c.project == where.project)
        if where.env_type is not None or where.labels:
            e = tables.environments
            query = query.join(e, and_(e.c.project == t.c.project, e.c.id == t.c.env))
            if where.env_type is not None:
                query = query.where(e.c.type == where.env_type)
            for name, value in (where.labels or {}).items():
                query = query.where(e.c.labels[name].as_string() == value)
        with self.store.connect() as conn:
            if after is not None:
                position = conn.execute(
                    select(t.c.position).where(
                        t.c.rollout_id == rollout_id, t.c.project == after.project, t.c.env == after.env
                    )
                ).scalar()
                if position is None:
                    raise NotFoundError(
                        f"rollout {rollout_id} has no environment {after}", hint="page on with next_cursor"
                    )
                query = query.where(t.c.position > position)
            query = query.order_by(t.c.position)
            if limit is not None:
                query = query.limit(limit + 1)
            found = [_env(r) for r in conn.execute(query)]
        more = limit is not None and len(found) > limit
        return (found[:limit] if more else found), more

    def link_plans(self, rollout_id: str, version: str, plans: Mapping[EnvRef, int]) -> None:
        """Link environments to the plan a preflight made for `version` (a retarget's), for deploys to apply."""
        t = rollout_envs
        rows = [
            {"b_project": r.project, "b_env": r.env, "plan_id": i, "plan_version": version} for r, i in plans.items()
        ]
        if not rows:
            return
        query = (
            update(t)
            .where(t.c.rollout_id == rollout_id, t.c.project == bindparam("b_project"), t.c.env == bindparam("b_env"))
            .values(plan_id=bindparam("plan_id"), plan_version=bindparam("plan_version"))
        )
        with self.store.begin() as conn:
            conn.execute(query, rows)

    def list(self, module: str | None = None, phase: str | None = None) -> list[RolloutRecord]:
        """Rollouts, oldest first."""
        query = select(*_SUMMARY_COLUMNS).order_by(rollouts.c.created_at, rollouts.c.id)
        if module:
            query = query.where(rollouts.c.module == module)
        if phase:
            query = query.where(rollouts.c.phase == phase)
        with self.store.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def active(self) -> builtins.list[str]:
        """Ids of the rollouts that are not over, oldest first."""
        query = select(rollouts.c.id).where(rollouts.c.phase.not_in(_TERMINAL)).order_by(rollouts.c.created_at)
        with self.store.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def active_with(self, refs: Collection[EnvRef]) -> dict[str, builtins.list[EnvRef]]:
        """The active rollouts whose members include some of `refs`, and which of them: `rollout -> refs`."""
        t = rollout_envs
        pairs = sorted({(r.project, r.env) for r in refs})
        found: dict[str, builtins.list[EnvRef]] = {}
        with self.store.connect() as conn:
            for chunk in chunks(pairs):
                query = (
                    select(t.c.rollout_id, t.c.project, t.c.env)
                    .join(rollouts, rollouts.c.id == t.c.rollout_id)
                    .where(rollouts.c.phase.not_in(_TERMINAL), pair_in(t.c.project, t.c.env, chunk))
                    .order_by(t.c.rollout_id, t.c.position)
                )
                for rollout_id, project, env in conn.execute(query):
                    found.setdefault(rollout_id, []).append(EnvRef(project, env))
        return found

    def active_for(self, module: str) -> str | None:
        with self.store.connect() as conn:
            return _active_for(conn, module)

    def events(
        self, rollout_id: str, *, kinds: Sequence[str] | None = None, last: int | None = None
    ) -> builtins.list[dict[str, JSON]]:
        """The rollout's log in order; only `kinds` if given, only the `last` N if given."""
        t = rollout_events
        query = select(t).where(t.c.rollout_id == rollout_id)
        if kinds is not None:
            query = query.where(t.c.kind.in_(list(kinds)))
        if last:
            query = query.order_by(t.c.id.desc()).limit(last)
        elif kinds is None:
            query = query.order_by(t.c.id)
        with self.store.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if last:
            return rows[::-1]
        # A few kinds are a few lines among a large rollout's many: ordered by the database, SQLite would walk the
        # whole log in id order to avoid a sort, rather than search the (rollout, kind) index.
        return rows if kinds is None else sorted(rows, key=lambda r: int(r["id"]))

    def enqueue(self, rollout_id: str, command: ev.Queued, now: datetime) -> int:
        """Queue a command (or an alert) for whichever engine drives the rollout; NotFoundError for an unknown
        rollout."""
        with self.store.begin() as conn:
            _load(conn, rollout_id, with_state=False)
            return _enqueue(conn, rollout_id, command, now)

    def outcome(self, command_id: int) -> str | None:
        """What the state machine said of a queued command: "ok", its refusal, or None (not taken yet)."""
        with self.store.connect() as conn:
            return conn.execute(
                select(rollout_inbox.c.outcome).where(rollout_inbox.c.id == command_id)
            ).scalar_one_or_none()

    def driver(self, rollout_id: str, now: datetime) -> str | None:
        """The engine that holds the rollout's lease now, if any."""
        with self.store.connect() as conn:
            return leases.holder(conn, lease_name(rollout_id), now)

    def session(self, rollout_id: str) -> RolloutSession:
        return RolloutSession(self.store, rollout_id)


class RolloutSession:
    """One engine's handle on one rollout: the last revision it read is the base of its next save."""

    def __init__(self, store: Store, rollout_id: str) -> None:
        self.store = store
        self.id = rollout_id
        self._revision: int | None = None
        self._state: RolloutState | None = None  # as last loaded or saved

    def state(self) -> RolloutState:
        if self._state is None:
            with gc_paused(), self.store.connect() as conn:
                record, self._state = _load(conn, self.id)
                self._revision = record.revision
        return self._state

    def commands(self) -> list[tuple[int, ev.Queued]]:
        """Queued commands (and alerts) not yet decided, oldest first."""
        inbox = rollout_inbox
        query = (
            select(inbox.c.id, inbox.c.command)
            .where(inbox.c.rollout_id == self.id, inbox.c.done_at.is_(None))
            .order_by(inbox.c.id)
        )
        with self.store.connect() as conn:
            return [(i, decode(ev.Queued, c)) for i, c in conn.execute(query)]

    @contextmanager
    def turn(self) -> Iterator[RolloutTurn]:
        """One transaction for an engine turn's writes: the deployments it starts and the state that says so."""
        assert self._revision is not None and self._state is not None, "state() first"
        with self.store.begin() as conn:
            turn = RolloutTurn(self, conn)
            yield turn
        if turn.saved is not None:
            self._revision += 1
            self._state = turn.saved

    def acquire(self, holder: str, now: datetime, ttl: timedelta) -> str | None:
        """None when `holder` holds the lease now; otherwise who does. A lease whose holder is gone (a dead
        process of this host, or a host whose heartbeat expired) is taken over at once."""
        name = lease_name(self.id)
        with self.store.begin() as conn:
            if leases.acquire(conn, name, holder, now, ttl):
                return None
            current = leases.holder(conn, name, now)
            if current is not None and holders.is_gone(conn, current, now):
                leases.release(conn, name, current)
                if leases.acquire(conn, name, holder, now, ttl):
                    return None
            return current or "another engine"

    def release(self, holder: str) -> None:
        with self.store.begin() as conn:
            leases.release(conn, lease_name(self.id), holder)

    def finalize(self, action: ev.Finalize) -> list[str]:
        """Move the global rule to the target version and fold away the pins it now implies; returns why
        the pins that stay were kept."""
        with self.store.begin() as conn:
            estate = self.store.load_estate(conn)
            module = estate.module(action.module)
            if module is None:
                raise NotFoundError(f"module {action.module} is no longer in the store")
            final = ModuleRule(module.resource_type, action.module, action.version)
            values = {**_rule_values(final), "owner": CONFIG_OWNER}
            rules = tables.module_rules
            slot = rule_slot(final)
            if conn.execute(rules.update().where(rules.c.slot == slot).values(**values)).rowcount == 0:
                conn.execute(rules.insert().values(slot=slot, **values))
            folding = fold_pins(estate.rules, estate.environments, f"rollout:{self.id}", final)
            _delete_rules(conn, [rule_slot(p) for p in folding.folded])
        return list(folding.kept)


class RolloutTurn:
    """The writes of one engine turn, in the transaction `RolloutSession.turn` holds: a crash leaves all of them
    or none (the deployments a turn creates and the state that links its environments to them)."""

    def __init__(self, session: RolloutSession, conn: Connection) -> None:
        self.session = session
        self.conn = conn
        self.saved: RolloutState | None = None

    def save(
        self,
        state: RolloutState,
        log: Sequence[LogEntry],
        outcomes: Mapping[int, str],
        now: datetime,
        touched: Collection[EnvRef] = (),
    ) -> None:
        """Write the new state (optimistic revision: StaleRevision if someone else saved since), its log and
        the commands' outcomes. Only the environments in `touched` (the decisions' `touched`) are compared
        with the last saved state and written, and only the waves that changed."""
        session, conn = self.session, self.conn
        old, revision = session._state, session._revision
        assert old is not None and revision is not None
        changed = [e for e in (state.env(r) for r in touched) if e is not None and e != old.env(e.env)]
        waves = [w for w, was in zip(state.waves, old.waves, strict=True) if w is not was or _moved(state, old, w)]
        done = conn.execute(
            update(rollouts)
            .where(rollouts.c.id == session.id, rollouts.c.revision == revision)
            .values(
                state=_head(state),
                phase=str(state.phase),
                target_version=state.version,
                revision=revision + 1,
                updated_at=now,
            )
        )
        if done.rowcount != 1:
            raise StaleRevision(f"rollout {session.id} changed underneath (revision {revision})")
        if waves:
            w = rollout_waves
            query = update(w).where(w.c.rollout_id == session.id, w.c.number == bindparam("b_number"))
            conn.execute(query, [{"b_number": x.number, **_wave_row(state, x)} for x in waves])
        if changed:
            t = rollout_envs
            query = update(t).where(t.c.rollout_id == session.id, t.c.position == bindparam("b_position"))
            positions = state.envs.position
            conn.execute(query, [{"b_position": positions(e.env), **_env_values(e)} for e in changed])
        _append(conn, session.id, log, now)
        for command_id, outcome in outcomes.items():
            conn.execute(
                update(rollout_inbox).where(rollout_inbox.c.id == command_id).values(done_at=now, outcome=outcome)
            )
        self.saved = state

    def mark_defective(self, action: ev.MarkDefective, now: datetime) -> bool:
        """Mark the version the action names defective, with the turn's state (False: it already was)."""
        return lifecycle.mark_defective_by_rollout(
            self.conn, self.session.id, action.module, action.version, action.reason, now
        )

    def prepare(
        self,
        actions: Sequence[ev.StartDeployment],
        resource_type: str,
        *,
        holder: str,
        now: datetime,
        create: bool = True,
    ) -> list[tuple[ev.StartDeployment, Deployment | None]]:
        """The deployment of each action: the one already made for its key, or (if `create`) a new one, made
        after pinning the environment to the action's version and linked to the key before anyone can run it. A
        deployment whose process died is marked interrupted and redone as a new, linked deployment. None where
        there is none and none may be created (after an abort)."""
        conn, rollout_id = self.conn, self.session.id
        linked = _linked(conn, [a.key for a in actions])
        found: dict[str, Deployment] = {}
        redo: list[ev.StartDeployment] = []
        replaced: dict[str, int] = {}
        for action in actions:
            dep = linked.get(action.key)
            if dep is not None and dep.status.is_active and holders.is_gone(conn, dep.holder, now):
                dep = deps.transition(conn, dep.id, DeploymentStatus.INTERRUPTED, now, _gone(dep.holder))
            if dep is not None and dep.status is DeploymentStatus.INTERRUPTED:
                replaced[action.key] = dep.id
                redo.append(action)
            elif dep is not None:
                found[action.key] = dep
            elif create:
                redo.append(action)
        if redo:
            pins = [_pin(a, resource_type) for a in redo if a.key not in replaced]
            _set_pins(conn, rollout_id, pins)
            estate = self.session.store.graph_estate(conn, [a.env for a in redo])
            plans = _plans(conn, rollout_id, redo)
            news = [_new_deployment(estate, a, rollout_id, holder, plans.get(a.key)) for a in redo]
            for action, dep in zip(redo, deps.insert_deployments(conn, news, now), strict=True):
                if action.key in replaced:
                    deps.mark_retried(conn, replaced[action.key], dep.id)
                found[action.key] = dep
            _link(conn, rollout_id, {a.key: found[a.key].id for a in redo})
        return [(a, found.get(a.key)) for a in actions]


def _plans(conn: Connection, rollout_id: str, actions: Sequence[ev.StartDeployment]) -> dict[str, int]:
    """`action key -> preflight plan deployment` for the deploys whose environment has a plan of their version."""
    t = rollout_envs
    deploys = {(a.env.project, a.env.env): a for a in actions if a.kind is DeploymentKind.DEPLOY}
    found: dict[str, int] = {}
    for chunk in chunks(sorted(deploys)):
        query = select(t.c.project, t.c.env, t.c.plan_id, t.c.plan_version).where(
            t.c.rollout_id == rollout_id, t.c.plan_id.is_not(None), pair_in(t.c.project, t.c.env, chunk)
        )
        for project, env, plan_id, version in conn.execute(query):
            action = deploys[(project, env)]
            if version == action.version:
                found[action.key] = int(plan_id)
    return found


def _new_deployment(
    estate: Any, action: ev.StartDeployment, rollout_id: str, holder: str, plan: int | None = None
) -> deps.NewDeployment:
    """A queued deployment of the action's environment (to apply the saved `plan` if it is still valid), or
    an errored one when its graph cannot resolve or it would deploy a version marked defective since."""
    triggered = f"rollout:{rollout_id}"
    try:
        graph = resolve_graph(estate, action.env)
        module = estate.module(action.module)
        version = module.version(action.version) if module is not None else None
        if action.kind is DeploymentKind.DEPLOY and version is not None:
            check_deployable(version)  # a rollback to a defective version stays allowed
    except EstateError as exc:
        return deps.NewDeployment(
            action.env,
            action.kind,
            triggered,
            ResolvedGraph(action.env, ""),
            rollout_id,
            holder,
            DeploymentStatus.ERRORED,
            exc.message,
        )
    return deps.NewDeployment(action.env, action.kind, triggered, graph, rollout_id, holder, apply_plan=plan)


def _gone(holder: str | None) -> str:
    return f"interrupted: {holder or 'the process running it'} stopped while it ran"


def _load(
    conn: Connection, rollout_id: str, *, with_state: bool = True, with_envs: bool = True
) -> tuple[RolloutRecord, RolloutState]:
    """The rollout's record and state: whole; without environments (`with_envs=False`: see RolloutOutline);
    or only the record (`with_state=False`, the state is then None)."""
    columns = list(rollouts.c) if with_state else _SUMMARY_COLUMNS
    row = conn.execute(select(*columns).where(rollouts.c.id == rollout_id)).first()
    if row is None:
        raise NotFoundError(f"no rollout '{rollout_id}'", hint="see `estate rollout list`")
    if not with_state:
        return _record(row), None  # type: ignore[return-value]
    w = rollout_waves
    wave_rows = conn.execute(select(w.c.state).where(w.c.rollout_id == rollout_id).order_by(w.c.number)).scalars()
    waves = [decode_as(WaveState, {**data, "envs": []}) for data in wave_rows]
    state = decode_as(RolloutState, {**row._mapping["state"], "waves": [], "envs": []})
    if with_envs:
        t = rollout_envs
        envs = [_env(r) for r in conn.execute(select(t).where(t.c.rollout_id == rollout_id).order_by(t.c.position))]
        members: dict[int, list[EnvRef]] = {}
        for e in envs:
            members.setdefault(e.wave, []).append(e.env)
        waves = [replace(x, envs=tuple(members.get(x.number, ()))) for x in waves]
        state = replace(state, envs=EnvTable(envs))
    return _record(row), replace(state, waves=tuple(waves))


def _head(state: RolloutState) -> JSON:
    """The rollout row's part of the state: everything but the waves and the environments."""
    data = encode(replace(state, waves=(), envs=_NO_ENVS))
    del data["waves"], data["envs"]
    return data


_NO_ENVS = EnvTable()


def _wave_row(state: RolloutState, wave: WaveState) -> dict[str, JSON]:
    data = encode(replace(wave, envs=()))
    del data["envs"]
    return {"state": data, "counts": _counts(state, wave.number)}


def _counts(state: RolloutState, number: int) -> dict[str, int]:
    return {str(s): n for s, n in state.envs.counts(number).items()}


def _moved(state: RolloutState, old: RolloutState, wave: WaveState) -> bool:
    """The wave's counts per status changed."""
    return state.envs.counts(wave.number) != old.envs.counts(wave.number)


def _env_values(e: EnvState) -> dict[str, JSON]:
    """The columns of an environment's row that its state sets."""
    return {
        "status": str(e.status),
        "previous_version": e.previous_version,
        "version": e.version,
        "changed": e.changed,
        "attempts": e.attempts,
        "action_key": e.key,
        "kind": None if e.kind is None else str(e.kind),
        "target": e.target,
        "deployment_id": e.deployment_id,
        "reason": e.reason,
        "retry_at": e.retry_at,
        "errors": e.errors,
        "queued": e.queued,
        "env_type": e.env_type,
        "finished_at": e.finished_at,
    }


def _env_row(rollout_id: str, position: int, e: EnvState) -> dict[str, JSON]:
    keys = {"rollout_id": rollout_id, "position": position, "project": e.env.project, "env": e.env.env}
    return {**keys, "wave": e.wave, **_env_values(e)}


def _plan_link(plans: Mapping[EnvRef, int] | None, ref: EnvRef, version: str) -> dict[str, JSON]:
    plan = (plans or {}).get(ref)
    return {"plan_id": plan, "plan_version": version if plan is not None else None}


def _env(row: Any) -> EnvState:
    r = row._mapping
    return EnvState(
        env=EnvRef(r["project"], r["env"]),
        wave=r["wave"],
        previous_version=r["previous_version"],
        version=r["version"],
        status=EnvStatus(r["status"]),
        changed=r["changed"],
        attempts=r["attempts"],
        key=r["action_key"],
        kind=None if r["kind"] is None else DeploymentKind(r["kind"]),
        target=r["target"],
        deployment_id=r["deployment_id"],
        reason=r["reason"],
        retry_at=r["retry_at"],
        errors=r["errors"],
        queued=r["queued"],
        env_type=r["env_type"],
        finished_at=r["finished_at"],
    )


def _record(row: Any) -> RolloutRecord:
    m = row._mapping
    return RolloutRecord(**{k: m[k] for k in RolloutRecord.__dataclass_fields__})


def _active_for(conn: Connection, module: str) -> str | None:
    row = conn.execute(
        select(rollouts.c.id).where(rollouts.c.module == module, rollouts.c.phase.not_in(_TERMINAL))
    ).first()
    return row[0] if row else None


def _next_value(conn: Connection, name: str) -> int:
    """The next number of counter `name`, in the caller's transaction (the row lock serializes allocations)."""
    t = tables.counters
    if conn.execute(update(t).where(t.c.name == name).values(value=t.c.value + 1)).rowcount == 0:
        try:
            with conn.begin_nested():
                conn.execute(insert(t).values(name=name, value=1))
        except IntegrityError:  # another transaction created it first
            conn.execute(update(t).where(t.c.name == name).values(value=t.c.value + 1))
    return int(conn.execute(select(t.c.value).where(t.c.name == name)).scalar_one())


def _append(conn: Connection, rollout_id: str, entries: Sequence[LogEntry], now: datetime) -> None:
    if entries:
        feed.append(
            conn, [feed.from_rollout_log(rollout_id, now, e.kind, e.summary, e.actor, e.payload or {}) for e in entries]
        )
        conn.execute(
            insert(rollout_events),
            [
                {
                    "rollout_id": rollout_id,
                    "at": now,
                    "kind": e.kind,
                    "actor": e.actor,
                    "summary": e.summary,
                    "payload": dict(e.payload or {}),
                }
                for e in entries
            ],
        )


def _enqueue(conn: Connection, rollout_id: str, command: ev.Queued, now: datetime) -> int:
    result = conn.execute(
        insert(rollout_inbox).values(rollout_id=rollout_id, at=now, actor=command.actor, command=encode(command))
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _pin(action: ev.StartDeployment, resource_type: str) -> ModuleRule:
    return ModuleRule(resource_type, action.module, action.version, action.env.project, None, action.env.env)


def _rule_values(rule: ModuleRule) -> dict[str, Any]:
    return {
        "resource_type": rule.resource_type,
        "module": rule.module,
        "version": rule.version,
        "project": rule.project,
        "env_type": rule.env_type,
        "env": rule.env,
    }


def _set_pins(conn: Connection, rollout_id: str, rules: Sequence[ModuleRule]) -> None:
    """Write (or move) the env-scoped rules a rollout owns, one per environment, in two statements."""
    if not rules:
        return
    owner = f"rollout:{rollout_id}"
    owned = [replace(r, owner=owner) for r in rules]
    slots = [rule_slot(r) for r in owned]
    _delete_rules(conn, slots)
    conn.execute(
        insert(tables.module_rules),
        [{"slot": s, **_rule_values(r), "owner": owner} for s, r in zip(slots, owned, strict=True)],
    )


def _delete_rules(conn: Connection, slots: Sequence[str]) -> None:
    t = tables.module_rules
    for chunk in chunks(list(slots)):
        conn.execute(delete(t).where(t.c.slot.in_(chunk)))


def _linked(conn: Connection, keys: Sequence[str]) -> dict[str, Deployment]:
    """`action key -> deployment` for the keys that already have one."""
    link, d = rollout_deployments, tables.deployments
    found: dict[str, Deployment] = {}
    for chunk in chunks(list(keys)):
        query = select(link.c.action_key, d).join(d, d.c.id == link.c.deployment_id)
        rows = conn.execute(query.where(link.c.action_key.in_(chunk)))
        found.update((r[0], deps.from_row(r)) for r in rows)
    return found


def _link(conn: Connection, rollout_id: str, links: Mapping[str, int]) -> None:
    """Point each action key at its deployment (a redo of an interrupted run moves an existing link)."""
    if not links:
        return
    t = rollout_deployments
    for chunk in chunks(list(links)):
        conn.execute(delete(t).where(t.c.action_key.in_(chunk)))
    conn.execute(insert(t), [{"action_key": k, "rollout_id": rollout_id, "deployment_id": d} for k, d in links.items()])
