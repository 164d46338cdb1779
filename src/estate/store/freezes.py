"""Freezes in the store: start one, lift them, read those in force."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update

from estate.domain.freezes import Freeze
from estate.store.repository import Store
from estate.store.tables import freezes


class FreezeStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, *, env_type: str | None, reason: str, until: datetime | None, actor: str, now: datetime) -> Freeze:
        with self.store.begin() as conn:
            row = {"env_type": env_type, "reason": reason, "until": until, "created_by": actor, "created_at": now}
            result = conn.execute(insert(freezes).values(**row))
            return _freeze({"id": int(result.inserted_primary_key[0]), **row})  # type: ignore[index]

    def active(self, now: datetime) -> tuple[Freeze, ...]:
        """The freezes in force at `now`, oldest first."""
        t = freezes
        query = select(t).where(t.c.lifted_at.is_(None), or_(t.c.until.is_(None), t.c.until > now)).order_by(t.c.id)
        with self.store.connect() as conn:
            return tuple(_freeze(r._mapping) for r in conn.execute(query))

    def lift(self, ids: list[int], *, actor: str, now: datetime) -> None:
        if not ids:
            return
        t = freezes
        with self.store.begin() as conn:
            conn.execute(update(t).where(t.c.id.in_(ids)).values(lifted_by=actor, lifted_at=now))


def _freeze(row: Any) -> Freeze:
    return Freeze(
        id=row["id"],
        reason=row["reason"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        env_type=row["env_type"],
        until=row["until"],
    )
