"""The audit trail: every request that changed or tried to change something."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from estate.api import pages
from estate.api.deps import Estate
from estate.api.problems import ERRORS
from estate.api.requests import ENV_PATTERN, ROLLOUT_PATTERN
from estate.app.audit import AuditFilter
from estate.app.views.audit import AuditEntryView

router = APIRouter(tags=["audit"], responses=ERRORS)


@router.get("/audit")
def audit(
    estate: Estate,
    subject: Annotated[str | None, Query(max_length=255, description="only what this subject asked for")] = None,
    rollout: Annotated[str | None, Query(pattern=ROLLOUT_PATTERN)] = None,
    env: Annotated[str | None, Query(pattern=ENV_PATTERN)] = None,
    since: Annotated[datetime | None, Query(description="at or after this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (ISO 8601)")] = None,
    outcome: Annotated[str | None, Query(pattern=r"^(ok|refused|failed|denied)$")] = None,
    limit: pages.Limit = pages.DEFAULT_LIMIT,
    after: pages.After = None,
) -> pages.Page[AuditEntryView]:
    """Entries, newest first."""
    targets = tuple(t for t in (f"rollout:{rollout}" if rollout else None, f"env:{env}" if env else None) if t)
    wanted = AuditFilter(
        actor=subject,
        targets=targets,
        since=since,
        until=until,
        outcome=outcome,
        before_id=pages.before_id(after),
        limit=limit + 1,
    )
    return pages.by_id(estate.audit.entries(wanted), lambda e: e.id, limit)
