"""`estate apply`: diff estate-as-code against the store and write the difference in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, and_, delete, insert, select, update

from estate.domain.model import Estate
from estate.store import tables
from estate.store.rows import KINDS, Kind, Row


class SyncAction(StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"


@dataclass(frozen=True)
class Change:
    """One object `apply` adds, changes or removes."""

    kind: str
    key: str
    action: SyncAction
    fields: tuple[str, ...] = ()  # what changed, for CHANGE


@dataclass(frozen=True)
class SyncPlan:
    """Everything `apply` would do; `held` lists removals that need `--prune`."""

    changes: tuple[Change, ...] = ()
    held: tuple[Change, ...] = ()
    immutable: tuple[Change, ...] = field(default=())  # published versions whose source/inputs differ

    @property
    def empty(self) -> bool:
        return not self.changes


def _changed_fields(kind: Kind, old: Row, new: Row) -> tuple[str, ...]:
    columns = kind.compared or tuple(new)
    return tuple(c for c in columns if old.get(c) != new.get(c))


def plan_sync(current: Estate, desired: Estate, *, prune: bool) -> SyncPlan:
    """What turns `current` into `desired`; removals only with `prune`, published versions never."""
    changes: list[Change] = []
    held: list[Change] = []
    immutable: list[Change] = []
    for kind in KINDS:
        old, new = kind.rows(current), kind.rows(desired)
        for key in sorted(new.keys() - old.keys()):
            changes.append(Change(kind.name, key, SyncAction.ADD))
        for key in sorted(new.keys() & old.keys()):
            diff = _changed_fields(kind, old[key], new[key])
            if diff:
                target = immutable if kind.name == "module_version" else changes
                target.append(Change(kind.name, key, SyncAction.CHANGE, diff))
        if kind.name == "module_version":
            continue  # published versions are history: only their module's removal takes them
        for key in sorted(old.keys() - new.keys()):
            # Settings and roles follow the files exactly; objects need --prune to go.
            keep = prune or kind.name == "document"
            (changes if keep else held).append(Change(kind.name, key, SyncAction.REMOVE))
    return SyncPlan(tuple(changes), tuple(held), tuple(immutable))


def _where(kind: Kind, row: Row):  # type: ignore[no-untyped-def]
    return and_(*(kind.table.c[c] == row[c] for c in kind.key_columns))


def write_sync(conn: Connection, plan: SyncPlan, current: Estate, desired: Estate, actor: str, now: datetime) -> None:
    """Perform `plan` on `conn` (the caller owns the transaction)."""
    by_name = {k.name: k for k in KINDS}
    rows: dict[tuple[str, bool], dict[str, Row]] = {}  # (kind, desired?) -> rows, each rendered once

    def rows_of(kind: Kind, want_desired: bool) -> dict[str, Row]:
        key = (kind.name, want_desired)
        if key not in rows:
            rows[key] = kind.rows(desired if want_desired else current)
        return rows[key]

    for change in plan.changes:
        kind = by_name[change.kind]
        if change.action is SyncAction.REMOVE:
            conn.execute(delete(kind.table).where(_where(kind, rows_of(kind, False)[change.key])))
            if kind.name == "module":
                conn.execute(delete(tables.module_versions).where(tables.module_versions.c.module == change.key))
            continue
        row = rows_of(kind, True)[change.key]
        if change.action is SyncAction.ADD:
            if kind.name == "module_version":
                row = {**row, "published_at": now, "published_by": actor}
            conn.execute(insert(kind.table).values(**row))
        else:
            conn.execute(update(kind.table).where(_where(kind, row)).values(**row))


def environments_with_history(conn: Connection, refs: list[tuple[str, str]]) -> list[str]:
    """Which of `refs` have at least one deployment recorded."""
    if not refs:
        return []
    d = tables.deployments
    found = conn.execute(select(d.c.project, d.c.env).distinct()).all()
    have = {(p, e) for p, e in found}
    return [f"{p}/{e}" for p, e in refs if (p, e) in have]
