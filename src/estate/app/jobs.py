"""Background jobs (hosted mode): a request for long work (preflight plans, deploys, drift checks) returns a
job at once; a worker thread of this server runs the use case and records its progress and its result (or
error) in the store, where any server can read them. Jobs of a server that died are marked interrupted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from estate.app import failures
from estate.app.caller import Caller
from estate.app.progress import Progress
from estate.app.views import View
from estate.app.views.jobs import ErrorView, JobView
from estate.domain.jobs import JobStatus
from estate.errors import EstateError
from estate.store import Store
from estate.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

Work = Callable[[Progress], View]
PROGRESS_EVERY_SECONDS = 0.2  # at most this often a running job's progress is written


class Jobs:
    """Submit, run and read background jobs; `close` waits for the running ones."""

    def __init__(self, store: Store, now: Callable[[], datetime], holder: str, *, workers: int = 4) -> None:
        self.jobs = JobStore(store)
        self.now = now
        self.holder = holder
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(
        self,
        caller: Caller,
        kind: str,
        request: Mapping[str, Any],
        work: Work,
        *,
        check: Callable[[], None] = lambda: None,
    ) -> JobView:
        """Record a queued job and run `work` on a worker; returns the job as recorded. `check` runs first, here:
        a caller without the role, or a request for something that does not exist, is refused at once (403, 404)
        instead of becoming a job that fails."""
        check()
        record = self.jobs.create(kind, caller.subject, request, self.holder, self.now())
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="estate-job")
            self._executor.submit(self._run, record.id, work)
        return view(record)

    def get(self, job_id: int) -> JobView:
        return view(self.jobs.get(job_id))

    def list(self, *, limit: int = 50, before: int | None = None) -> list[JobView]:
        """Jobs, newest first."""
        return [view(r) for r in self.jobs.list(limit=limit, before=before)]

    def wait(self, job_id: int, timeout: float, *, poll: float = 0.1) -> JobView:
        """The job once it has ended, or as it stands after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get(job_id)
            if JobStatus(found.status).is_terminal or time.monotonic() >= deadline:
                return found
            time.sleep(poll)

    def recover(self) -> int:
        """Mark interrupted the jobs whose server is gone (their worker died with it)."""
        return self.jobs.interrupt_orphans(self.now())

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _run(self, job_id: int, work: Work) -> None:
        self.jobs.update(job_id, self.now(), status=JobStatus.RUNNING)
        progress = JobProgress(self, job_id)
        try:
            result = work(progress)
        except EstateError as exc:
            self._end(job_id, progress, JobStatus.FAILED, error=failures.describe(exc).model_dump(mode="json"))
        except Exception as exc:  # a bug: the job must still end, and say so
            log.exception("job %s failed", job_id)
            error = ErrorView(category="EstateError", message=f"internal error: {type(exc).__name__}: {exc}")
            self._end(job_id, progress, JobStatus.FAILED, error=error.model_dump(mode="json"))
        else:
            self._end(job_id, progress, JobStatus.SUCCEEDED, result=result.model_dump(mode="json"))

    def _end(self, job_id: int, progress: JobProgress, status: JobStatus, **values: Any) -> None:
        try:
            self.jobs.update(job_id, self.now(), status=status, progress=progress.data, **values)
        except EstateError:  # the store is down: recovery marks it interrupted once this server is gone
            log.exception("job %s: could not record its end", job_id)


class JobProgress:
    """The progress port of one job, written to the store (at most every PROGRESS_EVERY_SECONDS)."""

    def __init__(self, jobs: Jobs, job_id: int) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.data: dict[str, Any] = {"label": "", "total": 0, "done": []}
        self._written = 0.0

    def begin(self, label: str, total: int) -> None:
        self.data = {"label": label, "total": total, "done": []}
        self._write(force=True)

    def advance(self, item: str, outcome: str) -> None:
        self.data["done"].append({"item": item, "outcome": outcome})
        self._write(force=False)

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._written >= PROGRESS_EVERY_SECONDS:
            self._written = now
            try:
                self.jobs.jobs.update(self.job_id, self.jobs.now(), progress=self.data)
            except EstateError:  # progress is a courtesy; the result is what counts
                log.warning("job %s: could not record progress", self.job_id, exc_info=True)


def view(record: JobRecord) -> JobView:
    return JobView.model_validate(
        {
            "id": record.id,
            "kind": record.kind,
            "status": str(record.status),
            "actor": record.actor,
            "request": record.request,
            "progress": record.progress or {},
            "result": record.result,
            "error": record.error,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "finished_at": record.finished_at,
        }
    )
