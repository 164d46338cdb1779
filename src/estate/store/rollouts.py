"""Rollout persistence: the rollout row with its state, the append-only event log, the command inbox,
the pins and deployments a rollout's actions create, and the lease that gives a rollout one driver.

`RolloutStore` is what the application layer uses (create, read, queue commands); `RolloutSession` is
what an engine holds while it drives one rollout (load, save with an optimistic revision, perform
deployments idempotently by action key, finalize). Every method owns its transaction; ids come from
the store (`counters`), never from the caller.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from estate.domain import rollout_events as ev
from estate.domain.deployments import Deployment, DeploymentStatus
from estate.domain.graph import ResolvedGraph, resolve_graph
from estate.domain.pins import fold_pins
from estate.domain.rollout_state import EnvState, RolloutPhase, RolloutState
from estate.domain.rules import CONFIG_OWNER, ModuleRule
from estate.errors import ConflictError, EstateError, NotFoundError
from estate.store import deployments as deps
from estate.store import feed, holders, leases, tables
from estate.store.codec import decode, decode_as, encode, gc_paused
from estate.store.repository import Store
from estate.store.rollout_tables import rollout_deployments, rollout_events, rollout_inbox, rollouts
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
    ) -> RolloutState:
        """Allocate the next id for `module`, build the rollout's state with it and record the rollout,
        its first log entry and its `Start` command, in one transaction. ConflictError while another
        rollout of the module is active."""
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
                    state=encode(state),
                    preflight=preflight,
                    revision=0,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                )
            )
            _append(conn, state.id, [created], now)
            _enqueue(conn, state.id, ev.Start(actor), now)
        return state

    def record(self, rollout_id: str) -> RolloutRecord:
        with self.store.connect() as conn:
            return _load(conn, rollout_id)[0]

    def state(self, rollout_id: str) -> RolloutState:
        with gc_paused(), self.store.connect() as conn:
            return _load(conn, rollout_id)[1]

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
        query = query.order_by(t.c.id.desc() if last else t.c.id)
        if last:
            query = query.limit(last)
        with self.store.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return rows[::-1] if last else rows

    def enqueue(self, rollout_id: str, command: ev.Command, now: datetime) -> int:
        """Queue a command for whichever engine drives the rollout; NotFoundError for an unknown rollout."""
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
        self._state: RolloutState | None = None
        self._env_json: dict[int, tuple[EnvState, Any]] = {}  # id -> (the object, its JSON) as last saved

    def state(self) -> RolloutState:
        if self._state is None:
            with gc_paused(), self.store.connect() as conn:
                record, self._state = _load(conn, self.id)
                self._revision = record.revision
        return self._state

    def commands(self) -> list[tuple[int, ev.Command]]:
        """Queued commands not yet decided, oldest first."""
        inbox = rollout_inbox
        query = (
            select(inbox.c.id, inbox.c.command)
            .where(inbox.c.rollout_id == self.id, inbox.c.done_at.is_(None))
            .order_by(inbox.c.id)
        )
        with self.store.connect() as conn:
            return [(i, decode(ev.Command, c)) for i, c in conn.execute(query)]

    def save(self, state: RolloutState, log: Sequence[LogEntry], outcomes: Mapping[int, str], now: datetime) -> None:
        """Persist the new state, its log and the commands' outcomes in one transaction."""
        assert self._revision is not None, "state() first"
        with self.store.begin() as conn:
            done = conn.execute(
                update(rollouts)
                .where(rollouts.c.id == self.id, rollouts.c.revision == self._revision)
                .values(
                    state=self._encode(state),
                    phase=str(state.phase),
                    target_version=state.version,
                    revision=self._revision + 1,
                    updated_at=now,
                )
            )
            if done.rowcount != 1:
                raise StaleRevision(f"rollout {self.id} changed underneath (revision {self._revision})")
            _append(conn, self.id, log, now)
            for command_id, outcome in outcomes.items():
                conn.execute(
                    update(rollout_inbox).where(rollout_inbox.c.id == command_id).values(done_at=now, outcome=outcome)
                )
        self._revision += 1
        self._state = state

    def _encode(self, state: RolloutState) -> Any:
        """`encode(state)`, re-encoding only the environments that changed since the last save: states are
        immutable and share unchanged `EnvState` objects, so identity says what changed."""
        data = encode(replace(state, envs=()))
        memo = self._env_json
        data["envs"] = [memo[id(e)][1] if id(e) in memo and memo[id(e)][0] is e else encode(e) for e in state.envs]
        self._env_json = {id(e): (e, js) for e, js in zip(state.envs, data["envs"], strict=True)}
        return data

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

    def prepare(
        self,
        actions: Sequence[ev.StartDeployment],
        resource_type: str,
        *,
        holder: str,
        now: datetime,
        create: bool = True,
    ) -> list[tuple[ev.StartDeployment, Deployment | None]]:
        """The deployment of each action, in one transaction: the one already made for its key, or (if
        `create`) a new one, made after pinning the environment to the action's version and linked to the key
        before anyone can run it. A deployment whose process died is marked interrupted and redone as a new,
        linked deployment. None where there is none and none may be created (after an abort)."""
        with self.store.begin() as conn:
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
                _set_pins(conn, self.id, pins)
                estate = self.store.graph_estate(conn, [a.env for a in redo])
                for action in redo:
                    dep = deps.insert_deployment(conn, _new_deployment(estate, action, self.id, holder), now)
                    if action.key in replaced:
                        deps.mark_retried(conn, replaced[action.key], dep.id)
                    found[action.key] = dep
                _link(conn, self.id, {a.key: found[a.key].id for a in redo})
        return [(a, found.get(a.key)) for a in actions]

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


def _new_deployment(estate: Any, action: ev.StartDeployment, rollout_id: str, holder: str) -> deps.NewDeployment:
    """A queued deployment of the action's environment, or an errored one when its graph cannot resolve."""
    triggered = f"rollout:{rollout_id}"
    try:
        graph = resolve_graph(estate, action.env)
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
    return deps.NewDeployment(action.env, action.kind, triggered, graph, rollout_id, holder)


def _gone(holder: str | None) -> str:
    return f"interrupted: {holder or 'the process running it'} stopped while it ran"


def _load(conn: Connection, rollout_id: str, *, with_state: bool = True) -> tuple[RolloutRecord, RolloutState]:
    columns = list(rollouts.c) if with_state else _SUMMARY_COLUMNS
    row = conn.execute(select(*columns).where(rollouts.c.id == rollout_id)).first()
    if row is None:
        raise NotFoundError(f"no rollout '{rollout_id}'", hint="see `estate rollout list`")
    state = decode_as(RolloutState, row._mapping["state"]) if with_state else None
    return _record(row), state  # type: ignore[return-value]


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


def _enqueue(conn: Connection, rollout_id: str, command: ev.Command, now: datetime) -> int:
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
    for chunk in _chunks(list(slots)):
        conn.execute(delete(t).where(t.c.slot.in_(chunk)))


def _linked(conn: Connection, keys: Sequence[str]) -> dict[str, Deployment]:
    """`action key -> deployment` for the keys that already have one."""
    link, d = rollout_deployments, tables.deployments
    found: dict[str, Deployment] = {}
    for chunk in _chunks(list(keys)):
        query = select(link.c.action_key, d).join(d, d.c.id == link.c.deployment_id)
        rows = conn.execute(query.where(link.c.action_key.in_(chunk)))
        found.update((r[0], deps.from_row(r)) for r in rows)
    return found


def _link(conn: Connection, rollout_id: str, links: Mapping[str, int]) -> None:
    """Point each action key at its deployment (a redo of an interrupted run moves an existing link)."""
    if not links:
        return
    t = rollout_deployments
    for chunk in _chunks(list(links)):
        conn.execute(delete(t).where(t.c.action_key.in_(chunk)))
    conn.execute(insert(t), [{"action_key": k, "rollout_id": rollout_id, "deployment_id": d} for k, d in links.items()])


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    # SQLite caps the bound parameters of one statement; 500 stays well under every limit.
    return [items[i : i + size] for i in range(0, len(items), size)]
