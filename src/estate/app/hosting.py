"""Hosted mode: what `estate server` runs besides answering requests. The engine host drives every active
rollout on a thread of its own (bake and gate timers advance with nobody watching), and jobs left running by
a server that died are marked interrupted, at start and then every lease TTL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import text

from estate.app.bootstrap import App
from estate.app.views.events import CheckView, ReadinessView
from estate.errors import EstateError
from estate.store.database import at_head

log = logging.getLogger(__name__)


class Hosting:
    """Starts and stops the server's background work for one hosted `App`."""

    def __init__(self, app: App) -> None:
        if not app.wiring.hosted:
            raise ValueError("Hosting needs an App bootstrapped with Wiring(hosted=True)")
        self.app = app
        self._engine: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Recover orphaned jobs, then start the engine host and the sweeper."""
        self.app.jobs.recover()
        self.app.host  # noqa: B018 - build the engine (and check the runner) before serving
        self._engine = threading.Thread(target=self._drive, name="estate-engine", daemon=True)
        self._engine.start()
        self._sweeper = threading.Thread(target=self._sweep, name="estate-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine host after its current turn and wait for running jobs."""
        self._stopping.set()
        self.app.host.stop()
        for thread in (self._engine, self._sweeper):
            if thread is not None:
                thread.join(timeout)
        self.app.jobs.close()

    @property
    def engine_running(self) -> bool:
        return self._engine is not None and self._engine.is_alive()

    def readiness(self) -> ReadinessView:
        """Ready when the store answers, its schema is the newest migration and the engine host runs."""
        checks = [self._check("store", self._store_answers), self._check("migrations", self._at_head)]
        checks.append(CheckView(name="engine", ok=self.engine_running, detail="" if self.engine_running else "stopped"))
        return ReadinessView(ready=all(c.ok for c in checks), checks=checks)

    def _drive(self) -> None:
        try:
            self.app.host.run()  # tolerates a database that comes and goes; returns on stop()
        except Exception:
            log.exception("the engine host stopped")

    def _sweep(self) -> None:
        interval = self.app.settings.lease_ttl.total_seconds()
        while not self._stopping.wait(interval):
            try:
                self.app.jobs.recover()
            except EstateError:
                log.warning("could not look for interrupted jobs", exc_info=True)

    def _store_answers(self) -> str | None:
        with self.app.store.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None

    def _at_head(self) -> str | None:
        return None if at_head(self.app.store.engine) else "the database needs migrating (restart the server)"

    @staticmethod
    def _check(name: str, probe: Callable[[], str | None]) -> CheckView:
        try:
            problem = probe()
        except EstateError as exc:
            return CheckView(name=name, ok=False, detail=exc.message)
        except Exception as exc:
            return CheckView(name=name, ok=False, detail=f"{type(exc).__name__}: {exc}")
        return CheckView(name=name, ok=problem is None, detail=problem or "")
