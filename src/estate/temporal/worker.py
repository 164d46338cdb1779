"""Estate's Temporal workers in one process: rollout workflows (with their store and gate activities) on the
engine's task queue, and Terraform runs on each runner pool's queue. They run until `stop` is set (SIGTERM
or SIGINT when `signals`), then shut down gracefully: polling stops at once, runs in flight get `grace` to
finish, and a run still going at the deadline is handed back (see `RunnerActivities`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from estate.temporal.activities import RolloutActivities, RunnerActivities
from estate.temporal.client import TemporalSettings, connect
from estate.temporal.contract import pool_queue
from estate.temporal.workflow import RolloutWorkflow

#: Pure modules the workflow sandbox shares instead of re-importing them for every workflow run (with the
#: libraries the domain uses: immutables for the environment table, scipy/numpy for the compare gate).
PASSED_THROUGH = ("estate.domain", "estate.errors", "estate.temporal.contract", "immutables", "numpy", "scipy")


def sandbox() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH))


@dataclass
class WorkerSet:
    """What one process serves: rollouts (or not) and the runner pools it belongs to."""

    rollouts: RolloutActivities | None
    pools: Mapping[str, RunnerActivities]
    grace: timedelta = timedelta(seconds=60)
    max_runs: int = 4  # Terraform runs at once per pool in this process
    beat: Callable[[], None] = lambda: None  # "this process lives" (the store's heartbeat), called periodically
    beat_seconds: float = 10.0


async def serve(settings: TemporalSettings, workers: WorkerSet, stop: asyncio.Event, *, signals: bool = False) -> None:
    """Run the workers until `stop` is set (or a signal arrives, with `signals`), then shut them down."""
    if signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    running = _workers(client, settings, workers)
    tasks = [asyncio.create_task(w.run()) for w in running]
    beating = asyncio.create_task(_beat(workers, stop))
    try:
        await _until(stop, tasks)
    finally:
        await asyncio.gather(*(w.shutdown() for w in running), return_exceptions=True)
        await asyncio.gather(*tasks, beating, return_exceptions=True)
        # A process that exits right after a worker shut down may crash in interpreter finalization (the
        # SDK's native threads); dropping the workers and the client first avoids it.
        del running, tasks, client
        gc.collect()
        await asyncio.sleep(0.2)


def _workers(client: Client, settings: TemporalSettings, workers: WorkerSet) -> list[Worker]:
    built = []
    if workers.rollouts is not None:
        built.append(
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=[RolloutWorkflow],
                activities=workers.rollouts.all(),
                activity_executor=ThreadPoolExecutor(8, thread_name_prefix="estate-rollout"),
                workflow_runner=sandbox(),
                graceful_shutdown_timeout=workers.grace,
                # A turn of a large rollout computes for seconds (entering a wave of thousands of environments,
                # continuing as new with their state): the SDK's 2-second deadlock detector would fail such a
                # workflow task forever. `debug_mode` is the SDK's only switch for it (it also allows
                # breakpoint() in workflow code); the workflow task timeout set at start still bounds a turn.
                debug_mode=True,
            )
        )
    for pool, runner in workers.pools.items():
        built.append(
            Worker(
                client,
                task_queue=pool_queue(settings.task_queue, pool),
                activities=[runner.run_deployment],
                activity_executor=ThreadPoolExecutor(workers.max_runs, thread_name_prefix=f"estate-pool-{pool}"),
                max_concurrent_activities=workers.max_runs,
                graceful_shutdown_timeout=workers.grace,
            )
        )
    return built


async def _until(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Until `stop`, or until a worker fails (its error is raised)."""
    waiting = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    for task in done:
        if task is not waiting:
            task.result()


async def _beat(workers: WorkerSet, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # the store may be down for a moment; the next beat retries
            await asyncio.to_thread(workers.beat)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), workers.beat_seconds)
