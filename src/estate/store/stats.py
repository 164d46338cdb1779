"""Counts for `/metrics`, read from the store on each scrape so every server sharing one database exports
the same numbers: cheap aggregate queries, and deployments read incrementally by id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from estate.store.rollout_tables import rollout_inbox, rollouts
from estate.store.tables import deployments


def rollouts_by_phase(conn: Connection) -> dict[str, int]:
    query = select(rollouts.c.phase, func.count()).group_by(rollouts.c.phase)
    return {str(phase): int(n) for phase, n in conn.execute(query)}


def deployments_by_status(conn: Connection) -> dict[str, int]:
    query = select(deployments.c.status, func.count()).group_by(deployments.c.status)
    return {str(status): int(n) for status, n in conn.execute(query)}


@dataclass(frozen=True)
class DeploymentTimes:
    id: int
    kind: str
    status: str
    created_at: datetime
    updated_at: datetime


def deployments_from(conn: Connection, first_id: int) -> list[DeploymentTimes]:
    """Kind, status and times of every deployment from `first_id` on, in id order."""
    d = deployments
    query = (
        select(d.c.id, d.c.kind, d.c.status, d.c.created_at, d.c.updated_at).where(d.c.id >= first_id).order_by(d.c.id)
    )
    return [DeploymentTimes(*row) for row in conn.execute(query)]


def oldest_undecided_command(conn: Connection) -> datetime | None:
    """When the oldest command no engine has answered yet was queued."""
    found: datetime | None = conn.execute(
        select(func.min(rollout_inbox.c.at)).where(rollout_inbox.c.done_at.is_(None))
    ).scalar()
    return found
