"""The audit trail: one append-only row per request that changed or tried to change something.

Only `append` writes; nothing updates or deletes an entry. `query` filters by subject, target (a rollout,
an environment), time range and outcome, newest first, paged by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select

from estate.store.tables import audit

JSON = Any


@dataclass(frozen=True)
class AuditEntry:
    """Who asked for what, how they proved who they are, from where, and what came of it."""

    at: datetime
    actor: str
    action: str  # "apply", "module publish", "deploy", "rollout promote"
    target: str = ""  # "estate", "module:postgres@2.0.1", "env:checkout/eph-1", "rollout:postgres-1"
    outcome: str = "ok"  # ok | refused | failed | denied
    reason: str = ""
    auth: str = "local"  # local (embedded CLI), token, oidc
    source: str = "cli"  # "cli", or the client's address
    request_id: str | None = None
    details: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list; every given criterion must hold."""

    actor: str | None = None
    targets: tuple[str, ...] = ()  # any of these targets (e.g. a rollout and its environments)
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    before_id: int | None = None  # paging: entries older than this id
    limit: int = 100


def append(conn: Connection, entry: AuditEntry) -> int:
    row = {**entry.__dict__, "details": dict(entry.details)}
    return int(conn.execute(insert(audit).values(**row)).inserted_primary_key[0])  # type: ignore[index]


def query(conn: Connection, wanted: AuditFilter) -> list[tuple[int, AuditEntry]]:
    """Matching entries, newest first, with their ids."""
    q = select(audit).order_by(audit.c.id.desc()).limit(wanted.limit)
    if wanted.actor:
        q = q.where(audit.c.actor == wanted.actor)
    if wanted.targets:
        q = q.where(or_(*(audit.c.target == t for t in wanted.targets)))
    if wanted.since:
        q = q.where(audit.c.at >= wanted.since)
    if wanted.until:
        q = q.where(audit.c.at < wanted.until)
    if wanted.outcome:
        q = q.where(audit.c.outcome == wanted.outcome)
    if wanted.before_id is not None:
        q = q.where(audit.c.id < wanted.before_id)
    fields = AuditEntry.__dataclass_fields__
    return [(r.id, AuditEntry(**{k: r._mapping[k] for k in fields})) for r in conn.execute(q)]
