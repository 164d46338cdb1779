"""The event feed: every transition of a rollout, a wave, a gate, an environment or a deployment, and every
command a rollout accepted or refused, as one append-only sequence that any client can follow and resume.

Rows are written in the transaction of the change they describe (an outbox), so the feed never shows a
change that did not happen nor misses one that did. A reader resumes with `id > last seen`, which is only
safe if ids become visible in id order: on PostgreSQL concurrent transactions could commit a lower id after
a higher one was read, so every writer takes one transaction-scoped advisory lock before it inserts (ids are
then handed out in commit order); SQLite serializes writers anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from estate.store.tables import events

# Any constant works: the lock exists only to order the feed's writers (pg_advisory_xact_lock takes a bigint).
_FEED_LOCK = 0x65737461746531  # "estate1"


@dataclass(frozen=True)
class FeedEntry:
    """One event of the feed (`id` 0 until stored)."""

    kind: str  # rollout | target | wave | gate | env | command | alert | deployment
    at: datetime
    rollout_id: str | None = None
    deployment_id: int | None = None
    wave: int | None = None
    gate: int | None = None
    env: str | None = None
    before: str = ""
    after: str = ""
    reason: str = ""
    actor: str | None = None
    summary: str = ""
    id: int = 0


def lock(conn: Connection) -> None:
    """Order this transaction's feed rows after every other writer's (PostgreSQL; a no-op on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK})


def append(conn: Connection, entries: Sequence[FeedEntry]) -> None:
    """Add entries in the caller's transaction."""
    if not entries:
        return
    lock(conn)
    rows = [{k: v for k, v in e.__dict__.items() if k != "id"} for e in entries]
    conn.execute(insert(events), rows)


def from_rollout_log(
    rollout_id: str, at: datetime, kind: str, summary: str, actor: str | None, payload: Mapping[str, Any]
) -> FeedEntry:
    """The feed entry of one line of a rollout's log (`estate.store.rollouts.LogEntry`)."""
    common: dict[str, Any] = {"at": at, "rollout_id": rollout_id, "actor": actor, "summary": summary}
    if kind in ("phase", "transition"):  # the engine puts the typed subject in the payload
        return FeedEntry(
            kind=str(payload.get("kind") or ("rollout" if kind == "phase" else "env")),
            wave=payload.get("wave"),
            gate=payload.get("gate"),
            env=payload.get("env"),
            before=str(payload.get("before") or ""),
            after=str(payload.get("after") or ""),
            reason=str(payload.get("reason") or ""),
            **common,
        )
    if kind in ("command", "refused"):
        accepted = kind == "command"
        return FeedEntry(
            kind="command",
            before=str(payload.get("command") or "").lower(),
            after="accepted" if accepted else "refused",
            reason="" if accepted else summary,
            **common,
        )
    if kind == "alert":  # an alert the rollout received through its inbox
        return FeedEntry(
            kind="alert",
            wave=payload.get("wave"),
            env=payload.get("env"),
            before=str(payload.get("alert") or ""),
            after=str(payload.get("outcome") or ""),
            reason=str(payload.get("reason") or ""),
            **common,
        )
    return FeedEntry(kind="rollout", after=kind, **common)  # created


def read(
    conn: Connection, after: int, *, limit: int = 500, rollout_id: str | None = None, kinds: Sequence[str] = ()
) -> list[FeedEntry]:
    """Entries with an id above `after`, oldest first; only one rollout's and only `kinds` if given."""
    query = select(events).where(events.c.id > after).order_by(events.c.id).limit(limit)
    if rollout_id is not None:
        query = query.where(events.c.rollout_id == rollout_id)
    if kinds:
        query = query.where(events.c.kind.in_(list(kinds)))
    return [FeedEntry(**dict(r._mapping)) for r in conn.execute(query)]


def last_id(conn: Connection) -> int:
    """The id of the newest entry (0 when the feed is empty)."""
    return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())


def counts(conn: Connection, kind: str) -> dict[str, int]:
    """How many entries of `kind` ended in each `after` value (e.g. gate verdicts)."""
    query = select(events.c.after, func.count()).where(events.c.kind == kind).group_by(events.c.after)
    return {str(after): int(n) for after, n in conn.execute(query)}
