"""Rollout persistence: snapshots with optimistic locking, the event log, the command inbox, pins and the lease.

The repository treats the state machine's state as opaque JSON (the engine encodes it with `store.codec`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from estate.domain.rules import ModuleRule
from estate.errors import ConflictError, NotFoundError
from estate.store import tables
from estate.store.rollout_tables import leases, rollout_deployments, rollout_events, rollout_inbox, rollouts
from estate.store.rows import rule_slot

JSON = Any


@dataclass(frozen=True)
class RolloutRecord:
    """One stored rollout row."""

    id: str
    module: str
    target_version: str
    plan_id: str
    phase: str
    state: JSON
    preflight: JSON
    revision: int
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LogEntry:
    """One line of a rollout's append-only event log."""

    kind: str
    summary: str
    actor: str | None = None
    payload: Mapping[str, JSON] | None = None


@dataclass(frozen=True)
class InboxCommand:
    id: int
    actor: str
    command: JSON
    at: datetime


class StaleRevision(ConflictError):
    """Someone else saved the rollout since it was loaded (the lease should prevent this)."""


def next_rollout_id(conn: Connection, module: str) -> str:
    count = conn.execute(select(func.count()).select_from(rollouts).where(rollouts.c.module == module)).scalar_one()
    return f"{module}-{count + 1}"


def insert_rollout(conn: Connection, record: RolloutRecord) -> None:
    conn.execute(insert(rollouts).values(**record.__dict__))


def _record(row: Any) -> RolloutRecord:
    return RolloutRecord(**{k: row._mapping[k] for k in RolloutRecord.__dataclass_fields__})


def load_rollout(conn: Connection, rollout_id: str) -> RolloutRecord:
    row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
    if row is None:
        raise NotFoundError(f"no rollout '{rollout_id}'", hint="see `estate rollout list`")
    return _record(row)


def list_rollouts(conn: Connection, module: str | None = None) -> list[RolloutRecord]:
    query = select(rollouts).order_by(rollouts.c.created_at)
    if module:
        query = query.where(rollouts.c.module == module)
    return [_record(r) for r in conn.execute(query)]


def active_rollout_for(conn: Connection, module: str, terminal_phases: Sequence[str]) -> str | None:
    row = conn.execute(
        select(rollouts.c.id).where(rollouts.c.module == module, rollouts.c.phase.not_in(list(terminal_phases)))
    ).first()
    return row[0] if row else None


def save_rollout(conn: Connection, record: RolloutRecord, *, state: JSON, phase: str, now: datetime) -> RolloutRecord:
    """Write a new snapshot if nobody else did since `record` was loaded; returns the saved record."""
    done = conn.execute(
        update(rollouts)
        .where(
            rollouts.c.id == record.id,
            rollouts.c.revision == record.revision,
        )
        .values(state=state, phase=phase, revision=record.revision + 1, updated_at=now)
    )
    if done.rowcount != 1:
        raise StaleRevision(f"rollout {record.id} changed underneath (revision {record.revision})")
    return RolloutRecord(
        **{
            **record.__dict__,
            "state": state,
            "phase": phase,
            "revision": record.revision + 1,
            "updated_at": now,
        }
    )


def append_events(conn: Connection, rollout_id: str, entries: Sequence[LogEntry], now: datetime) -> None:
    if entries:
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


def events(
    conn: Connection, rollout_id: str, *, kinds: Sequence[str] | None = None, last: int | None = None
) -> list[dict[str, JSON]]:
    """The rollout's log in order; only `kinds` if given, only the `last` N if given."""
    t = rollout_events
    query = select(t).where(t.c.rollout_id == rollout_id)
    if kinds is not None:
        query = query.where(t.c.kind.in_(list(kinds)))
    query = query.order_by(t.c.id.desc() if last else t.c.id)
    if last:
        query = query.limit(last)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    return rows[::-1] if last else rows


def enqueue(conn: Connection, rollout_id: str, actor: str, command: JSON, now: datetime) -> int:
    result = conn.execute(insert(rollout_inbox).values(rollout_id=rollout_id, at=now, actor=actor, command=command))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def pending_commands(conn: Connection, rollout_id: str) -> list[InboxCommand]:
    rows = conn.execute(
        select(rollout_inbox)
        .where(rollout_inbox.c.rollout_id == rollout_id, rollout_inbox.c.done_at.is_(None))
        .order_by(rollout_inbox.c.id)
    )
    return [InboxCommand(r.id, r.actor, r.command, r.at) for r in rows]


def finish_command(conn: Connection, command_id: int, outcome: str, now: datetime) -> None:
    conn.execute(update(rollout_inbox).where(rollout_inbox.c.id == command_id).values(done_at=now, outcome=outcome))


def command_outcome(conn: Connection, command_id: int) -> str | None:
    return conn.execute(select(rollout_inbox.c.outcome).where(rollout_inbox.c.id == command_id)).scalar_one_or_none()


def set_pins(conn: Connection, rollout_id: str, rules: Sequence[ModuleRule]) -> None:
    """Write (or move) the env-scoped rules a rollout owns, one per environment, in two statements."""
    if not rules:
        return
    owner = f"rollout:{rollout_id}"
    rows = [
        {
            "slot": rule_slot(ModuleRule(r.resource_type, r.module, r.version, r.project, None, r.env, owner)),
            "resource_type": r.resource_type,
            "module": r.module,
            "version": r.version,
            "project": r.project,
            "env_type": None,
            "env": r.env,
            "owner": owner,
        }
        for r in rules
    ]
    t = tables.module_rules
    for chunk in _chunks([str(r["slot"]) for r in rows]):
        conn.execute(delete(t).where(t.c.slot.in_(chunk)))
    conn.execute(insert(t), rows)


def delete_rules(conn: Connection, slots: Sequence[str]) -> None:
    """Delete module rules by slot (a finalizing rollout folds its pins away this way)."""
    t = tables.module_rules
    for chunk in _chunks(list(slots)):
        conn.execute(delete(t).where(t.c.slot.in_(chunk)))


def deployments_for_actions(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    """`action key -> deployment id` for the keys that already have a deployment."""
    t = rollout_deployments
    found: dict[str, int] = {}
    for chunk in _chunks(list(keys)):
        found.update(
            (k, d) for k, d in conn.execute(select(t.c.action_key, t.c.deployment_id).where(t.c.action_key.in_(chunk)))
        )
    return found


def orphan_deployments(conn: Connection, rollout_id: str) -> dict[tuple[str, str, str], int]:
    """Queued deployments the rollout created but never linked (the engine died in between), newest per
    `(project, env, kind)`."""
    d, link = tables.deployments, rollout_deployments
    linked = select(link.c.deployment_id).where(link.c.rollout_id == rollout_id)
    rows = conn.execute(
        select(d.c.project, d.c.env, d.c.kind, d.c.id)
        .where(d.c.rollout_id == rollout_id, d.c.status == "queued", d.c.id.not_in(linked))
        .order_by(d.c.id)
    )
    return {(p, e, k): i for p, e, k, i in rows}


def link_deployments(conn: Connection, rollout_id: str, links: Mapping[str, int]) -> None:
    """Point each action key at its deployment (a retry of an interrupted run moves an existing link)."""
    if not links:
        return
    t = rollout_deployments
    for chunk in _chunks(list(links)):
        conn.execute(delete(t).where(t.c.action_key.in_(chunk)))
    conn.execute(insert(t), [{"action_key": k, "rollout_id": rollout_id, "deployment_id": d} for k, d in links.items()])


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    # SQLite caps the bound parameters of one statement; 500 stays well under every limit.
    return [items[i : i + size] for i in range(0, len(items), size)]


def acquire_lease(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name`; False while another holder's lease is unexpired."""
    expires = now + ttl
    renewed = conn.execute(
        update(leases)
        .where(
            leases.c.name == name,
            (leases.c.holder == holder) | (leases.c.expires_at < now),
        )
        .values(holder=holder, expires_at=expires)
    )
    if renewed.rowcount == 1:
        return True
    try:
        with conn.begin_nested():
            conn.execute(insert(leases).values(name=name, holder=holder, expires_at=expires))
    except IntegrityError:
        return False
    return True


def release_lease(conn: Connection, name: str, holder: str) -> None:
    conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


def lease_holder(conn: Connection, name: str, now: datetime) -> str | None:
    row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now.tzinfo)
    return str(row.holder) if expires >= now else None
