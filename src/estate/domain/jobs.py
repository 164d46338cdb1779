"""Background jobs: long work (preflight plans, deploys, drift checks) a server runs for a request that
returned at once; the job's status says how far it got."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job stands."""

    QUEUED = "queued"  # accepted, waits for a worker
    RUNNING = "running"  # a worker runs it; `progress` moves
    SUCCEEDED = "succeeded"  # it returned its result (which may itself report failed deployments)
    FAILED = "failed"  # it raised an error (bad input, a component down, a refused start...)
    INTERRUPTED = "interrupted"  # the server running it stopped before it ended

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.INTERRUPTED)
