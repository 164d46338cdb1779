"""A local pool: run deployments on threads, at most `max_parallel` at a time.

Each deployment is one Terraform process at a time, so threads are cheap here: they wait on
subprocesses. The per-environment lock (see `locks`) still applies inside the pool: a second
deployment of a busy environment ends `errored` (retryable) without running.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from estate.domain.deployments import Deployment
from estate.runners.ports import Runner


class LocalPool:
    def __init__(self, runner: Runner, max_parallel: int) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.runner = runner
        self._executor = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="estate-deploy")

    def submit(self, deployment_id: int) -> Future[Deployment]:
        """Run `deployment_id` when a slot is free; the future holds its final record."""
        return self._executor.submit(self.runner.run, deployment_id)

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        self._executor.shutdown(wait=True, cancel_futures=cancel_pending)

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown(cancel_pending=exc is not None)
