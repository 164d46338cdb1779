"""Background jobs in the store: created by the request that asks for long work, moved by the worker that
runs it, read by any server; a job whose process died is marked interrupted (`interrupt_orphans`)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from estate.domain.jobs import JobStatus
from estate.errors import NotFoundError
from estate.store import holders
from estate.store.repository import Store
from estate.store.tables import jobs

JSON = Any
_ACTIVE = [str(JobStatus.QUEUED), str(JobStatus.RUNNING)]


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    status: JobStatus
    actor: str
    request: JSON
    progress: JSON
    result: JSON
    error: JSON
    holder: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class JobStore:
    """Jobs of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, kind: str, actor: str, request: Mapping[str, JSON], holder: str, now: datetime) -> JobRecord:
        values = {
            "kind": kind,
            "status": str(JobStatus.QUEUED),
            "actor": actor,
            "request": dict(request),
            "progress": {},
            "holder": holder,
            "created_at": now,
            "updated_at": now,
        }
        with self.store.begin() as conn:
            job_id = int(conn.execute(insert(jobs).values(**values)).inserted_primary_key[0])  # type: ignore[index]
        return self.get(job_id)

    def get(self, job_id: int) -> JobRecord:
        with self.store.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"no job {job_id}", hint="jobs are listed at GET /api/v1/jobs")
        return _record(row)

    def list(self, *, limit: int, before: int | None = None) -> builtins.list[JobRecord]:
        """Newest first; `before` pages by id."""
        query = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(jobs.c.id < before)
        with self.store.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def update(self, job_id: int, now: datetime, **values: JSON) -> None:
        """Set status, progress, result or error (`status` as a JobStatus)."""
        if "status" in values:
            status = JobStatus(values["status"])
            values["status"] = str(status)
            if status.is_terminal:
                values["finished_at"] = now
        with self.store.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=now, **values))

    def interrupt_orphans(self, now: datetime) -> int:
        """Mark interrupted every queued or running job whose process is gone; how many there were."""
        with self.store.begin() as conn:
            active = conn.execute(select(jobs.c.id, jobs.c.holder).where(jobs.c.status.in_(_ACTIVE))).all()
            gone = [job_id for job_id, holder in active if holders.is_gone(conn, holder, now)]
            for job_id in gone:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status.in_(_ACTIVE))
                    .values(
                        status=str(JobStatus.INTERRUPTED),
                        error={
                            "category": "OperationFailed",
                            "message": "interrupted: the server running this job stopped before it ended",
                            "hint": "look at what it left (deployments, rollouts) and submit it again",
                        },
                        updated_at=now,
                        finished_at=now,
                    )
                )
        return len(gone)


def _record(row: Any) -> JobRecord:
    m = dict(row._mapping)
    m["status"] = JobStatus(m["status"])
    return JobRecord(**m)
