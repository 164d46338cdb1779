"""Module version lifecycle in the store: read and change a version's `lifecycle` (who, when, why)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from estate.domain.lifecycle import Lifecycle
from estate.errors import NotFoundError
from estate.store import audit
from estate.store.tables import module_versions


def current(conn: Connection, module: str, version: str) -> Lifecycle:
    """The version's lifecycle; NotFoundError when it is not published."""
    t = module_versions
    found = conn.execute(select(t.c.lifecycle).where(t.c.module == module, t.c.version == version)).scalar()
    if found is None:
        raise NotFoundError(f"module '{module}' has no published version '{version}'", hint="see `estate module list`")
    return Lifecycle(found)


def change(
    conn: Connection, module: str, version: str, lifecycle: Lifecycle, reason: str, actor: str, now: datetime
) -> Lifecycle:
    """Set the version's lifecycle (in the caller's transaction); returns what it was."""
    before = current(conn, module, version)
    t = module_versions
    conn.execute(
        update(t)
        .where(t.c.module == module, t.c.version == version)
        .values(lifecycle=str(lifecycle), lifecycle_reason=reason, lifecycle_by=actor, lifecycle_at=now)
    )
    return before


def mark_defective_by_rollout(
    conn: Connection, rollout_id: str, module: str, version: str, reason: str, now: datetime
) -> bool:
    """A rollout's gates failed `module@version` under `mark_defective_on_failure`: mark it defective and audit
    that the rollout did (False when it already was, or is no longer published)."""
    try:
        if current(conn, module, version) is Lifecycle.DEFECTIVE:
            return False
    except NotFoundError:
        return False
    actor = f"rollout:{rollout_id}"
    before = change(conn, module, version, Lifecycle.DEFECTIVE, reason, actor, now)
    entry = audit.AuditEntry(
        at=now,
        actor=actor,
        action="module mark-defective",
        target=f"module:{module}@{version}",
        reason=reason,
        auth="engine",
        source="engine",
        details={"before": str(before), "after": str(Lifecycle.DEFECTIVE), "automatic": True},
    )
    audit.append(conn, entry)
    return True
