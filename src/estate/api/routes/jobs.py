"""Background jobs: how long work (preflight plans, deploys, drift checks) is going, and what came of it."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Response

from estate.api import pages
from estate.api.deps import Estate
from estate.api.problems import ERRORS
from estate.app.views.jobs import JobView

router = APIRouter(tags=["jobs"], responses=ERRORS)

MAX_WAIT_SECONDS = 30.0


def accepted(job: JobView, response: Response) -> JobView:
    """202 with where to follow the job."""
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job


@router.get("/jobs")
def jobs(estate: Estate, limit: pages.Limit = pages.DEFAULT_LIMIT, after: pages.After = None) -> pages.Page[JobView]:
    """Jobs, newest first."""
    found = estate.jobs.list(limit=limit + 1, before=pages.before_id(after))
    return pages.by_id(found, lambda j: j.id, limit)


@router.get("/jobs/{job_id}")
async def job(
    job_id: Annotated[int, Path(ge=1, le=2**53)],
    estate: Estate,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for the job to end before answering")
    ] = 0,
) -> JobView:
    """A job: its status, progress, and once it has ended its `result` (or `error`, a problem's fields)."""
    return await anyio.to_thread.run_sync(lambda: estate.jobs.wait(job_id, wait))
