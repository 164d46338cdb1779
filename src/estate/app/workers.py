"""`estate worker`: serve rollout workflows and/or runner pools on Temporal, until stopped.

A runner pool's workers may run on any machine that reaches Temporal and the store, so what they share
must not be local files: the per-environment lock is a lease in the store (`StoreLocks`), and Terraform
state must live in a shared backend. Without `runner.backend`, a PostgreSQL store lends its database to the
`pg` backend (a schema per environment); a SQLite store has no shared backend to offer, so a runner pool
there needs `local_state` (one machine only, said explicitly).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from estate.errors import InputError
from estate.runners import DeploymentService, RunnerConfig
from estate.runners.ports import Runner
from estate.runners.shared_locks import StoreLocks
from estate.store.holders import heartbeat, process_identity, stop_heartbeat
from estate.temporal.activities import RolloutActivities, RunnerActivities
from estate.temporal.worker import WorkerSet, serve

if TYPE_CHECKING:
    from estate.app.bootstrap import App

LOCK_MARGIN = timedelta(minutes=10)  # an environment lease outlives the longest run by this much
SHARED_LOCK_WAIT = 120.0  # seconds plan/apply wait for a shared backend's state lock (the `pg` backend takes
# one lock for the first state of every environment in a database: parallel first runs queue on it)


class Workers:
    """Temporal workers wired to this estate's store, runner and gate sampler."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.holder = process_identity()

    def run(
        self,
        pools: list[str],
        *,
        rollouts: bool = False,
        grace: float = 60.0,
        max_runs: int = 4,
        local_state: bool = False,
        stop: threading.Event | None = None,
        signals: bool = True,
    ) -> None:
        """Serve until `stop` is set, or SIGTERM/SIGINT (`signals`); then shut down gracefully: runs in flight
        get `grace` seconds to finish and are handed back to the pool after that."""
        settings = self.app.temporal
        if settings is None:
            raise InputError(
                "the engine is local: workers serve the Temporal engine",
                hint="set settings.engine.kind: temporal (or ESTATE_ENGINE_KIND=temporal)",
            )
        if not pools and not rollouts:
            raise InputError("nothing to serve: give --pool NAME (runner pools) and/or --rollouts")
        app, now = self.app, self.app.wiring.now
        runner = self._runner(local_state) if pools else None
        workers = WorkerSet(
            rollouts=RolloutActivities(
                app.store,
                now=now,
                holder=self.holder,
                sampler=app.engine.sampler,
                observers=app.engine.observers,
                on_log=app.wiring.on_log,
            )
            if rollouts
            else None,
            pools={
                p: RunnerActivities(runner, p, app.store, beat_seconds=min(5.0, settings.heartbeat_timeout / 3))
                for p in pools
            }
            if runner is not None
            else {},
            grace=timedelta(seconds=grace),
            max_runs=max_runs,
            beat=lambda: heartbeat(app.store, self.holder, now(), app.settings.lease_ttl),
            beat_seconds=app.settings.lease_ttl.total_seconds() / 3,
        )
        try:
            asyncio.run(self._serve(settings, workers, stop, signals))
        finally:
            for activities in workers.pools.values():
                activities.close()
            stop_heartbeat(app.store, self.holder)

    async def _serve(self, settings: Any, workers: WorkerSet, stop: threading.Event | None, signals: bool) -> None:
        stopping = asyncio.Event()
        if stop is not None:  # a thread's stop event (tests, embedding) bridged onto this loop

            async def bridge() -> None:
                while not stop.is_set() and not stopping.is_set():
                    await asyncio.sleep(0.1)
                stopping.set()

            watcher = asyncio.create_task(bridge())
        await serve(settings, workers, stopping, signals=signals)
        if stop is not None:
            await watcher

    def _runner(self, local_state: bool) -> Runner:
        app = self.app
        if app.wiring.runner is not None:
            return app.wiring.runner(app.store, app.settings)
        config = RunnerConfig.build(app.settings, app.store.settings())
        if not config.backend:
            url = app.settings.database_url
            if url.startswith("postgresql"):
                config = replace(config, backend={"pg": {"conn_str": url, "schema_name": "estate_{project}_{env}"}})
            elif not local_state:
                raise InputError(
                    "a runner pool needs shared Terraform state: workers on other machines cannot see local files",
                    hint="set settings.runner.backend (e.g. pg), use a PostgreSQL store, or pass --local-state "
                    "when every worker of the pool runs on this machine",
                )
        if not config.lock_timeout_seconds:  # a shared backend's lock is busy now and then: wait for it
            config = replace(config, lock_timeout_seconds=SHARED_LOCK_WAIT)
        ttl = timedelta(seconds=config.timeout_seconds) + LOCK_MARGIN
        locks = StoreLocks(app.store, self.holder, app.wiring.now, ttl)
        service = DeploymentService(
            app.store, app.settings, now=app.wiring.now, config=config, holder=self.holder, locks=locks
        )
        service.recover()
        return service
