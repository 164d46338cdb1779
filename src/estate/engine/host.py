"""The engine host: drives every rollout it can lease, concurrently, in one process.

`estate server` and `estate engine run` run one; an embedded CLI command runs one for a single rollout
until that rollout needs a human. Each rollout has its own driver (`estate.engine.driver`) under its own
lease; all of them share the host's deployment pool (at most `max_parallel` Terraform runs at once) and
its sampling pool, so one rollout's ten-minute gate is a timer that holds up nobody. Several hosts may
share one PostgreSQL: a rollout is driven by whichever host holds its lease, and a host that dies stops
renewing its leases and its heartbeat, so another host adopts its rollouts within the lease TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from estate.domain.rollout_state import RolloutState
from estate.engine.config import DISCOVER_SECONDS, EngineConfig
from estate.engine.driver import LeaseHeld, RolloutDriver
from estate.errors import EstateError
from estate.runners.pool import LocalPool
from estate.store.holders import heartbeat, stop_heartbeat
from estate.store.rollouts import RolloutStore

log = logging.getLogger(__name__)

Until = Callable[["EngineHost"], bool]


class EngineHost:
    """Drives rollouts until told to stop; see the module docstring."""

    def __init__(self, config: EngineConfig) -> None:
        self.cfg = config
        self.rollouts = RolloutStore(config.store)
        self.drivers: dict[str, RolloutDriver] = {}
        self.elsewhere: dict[str, str] = {}  # rollout -> the engine that holds its lease
        self.wake = threading.Event()  # set when work finishes or a command is queued in this process
        self._stop = threading.Event()
        self.ended: set[str] = set()  # rollouts this host saw end
        self._discovered_at: datetime | None = None
        self._beat_at: datetime | None = None
        self._poked = True  # a command may wait in the inbox: read it in the next turn
        self._turned_at = 0.0  # time.monotonic() when the last round of turns began

    def drive(self, rollout_id: str) -> RolloutState | None:
        """Drive one rollout until it needs a human or ends; None when another engine drives it."""
        self.run([rollout_id], until=lambda host: host.settled(rollout_id), tolerate=False)
        driver = self.drivers.get(rollout_id)
        return None if rollout_id in self.elsewhere else (driver.state if driver else self.rollouts.state(rollout_id))

    def settled(self, rollout_id: str) -> bool:
        """The rollout waits for a human, is over, or is not ours to drive."""
        driver = self.drivers.get(rollout_id)
        return rollout_id in self.elsewhere or (driver is not None and driver.settled)

    def all_settled(self) -> bool:
        return self._discovered_at is not None and all(d.settled for d in self.drivers.values())

    def stop(self) -> None:
        """Ask `run` to return after its current turn (thread-safe; e.g. from a signal handler)."""
        self._stop.set()
        self.wake.set()

    def poke(self) -> None:
        """Something was queued for a rollout: look now instead of at the next poll."""
        self._poked = True
        self.wake.set()

    def run(
        self, rollouts: Collection[str] | None = None, *, until: Until | None = None, tolerate: bool = True
    ) -> None:
        """Drive `rollouts` (default: every active rollout, new ones included) until `until(self)` holds or
        `stop()` is called. With `tolerate`, a rollout whose turn fails (its database is down) is dropped
        and adopted again later instead of ending the run; without it, the error is raised."""
        pool = LocalPool(self.cfg.runner, max(self.cfg.max_parallel, 1))
        sampling = ThreadPoolExecutor(max_workers=4, thread_name_prefix="estate-sample")
        try:
            while not self._stop.is_set():
                now = self.cfg.now()
                self._beat(now)
                self._adopt(rollouts, now, pool, sampling, tolerate)
                poked, self._poked = self._poked, False
                self._turned_at = time.monotonic()
                for driver in list(self.drivers.values()):
                    self._turn(driver, now, tolerate, poked)
                if until is not None and until(self):
                    return
                if rollouts is not None and not self.drivers and set(rollouts) <= set(self.elsewhere) | self.ended:
                    return
                self._wait()
        finally:
            for driver in self.drivers.values():
                driver.close()
            sampling.shutdown(wait=False, cancel_futures=True)
            pool.shutdown()
            self._stop_beating()

    def _turn(self, driver: RolloutDriver, now: datetime, tolerate: bool, poked: bool) -> None:
        try:
            driver.turn(now, poked=poked)
        except LeaseHeld as held:
            log.warning("rollout %s: another engine took over (%s)", driver.id, held.holder)
            self.drivers.pop(driver.id)
            self.elsewhere[driver.id] = held.holder
            return
        except EstateError:
            if not tolerate:
                raise
            log.exception("rollout %s: its turn failed; it will be adopted again", driver.id)
            self.drivers.pop(driver.id)
            driver.close()
            return
        if driver.over:
            self.drivers.pop(driver.id)
            self.ended.add(driver.id)
            driver.close()

    def _adopt(
        self,
        wanted: Collection[str] | None,
        now: datetime,
        pool: LocalPool,
        sampling: ThreadPoolExecutor,
        tolerate: bool,
    ) -> None:
        """Every few seconds: take the lease of each active rollout that no live engine drives."""
        if self._discovered_at is not None and (now - self._discovered_at).total_seconds() < DISCOVER_SECONDS:
            return
        self._discovered_at = now
        try:
            active = self.rollouts.active() if wanted is None else [r for r in wanted if r not in self.ended]
        except EstateError:
            if not tolerate:
                raise
            log.exception("cannot list the active rollouts")
            return
        for rollout_id in active:
            if rollout_id in self.drivers:
                continue
            driver = RolloutDriver(self.cfg, rollout_id, pool, sampling)
            try:
                state = driver.start(now, lambda _future: self.wake.set())
            except LeaseHeld as held:
                self.elsewhere[rollout_id] = held.holder
                continue
            except EstateError:
                if not tolerate:
                    raise
                log.exception("rollout %s: cannot adopt it now", rollout_id)
                driver.close()
                continue
            self.elsewhere.pop(rollout_id, None)
            if state.phase.is_terminal and not driver.busy:
                driver.close()
                self.ended.add(rollout_id)
                continue
            self.drivers[rollout_id] = driver

    def _wait(self) -> None:
        now = self.cfg.now()
        timeout = self.cfg.poll_seconds
        timers = [t for t in (d.next_timer() for d in self.drivers.values()) if t is not None]
        if timers:
            timeout = max(0.0, min(timeout, (min(timers) - now).total_seconds()))
        if any(d.inbox or d.redo for d in self.drivers.values()):
            return
        in_flight = any(d.in_flight() for d in self.drivers.values())
        if self.cfg.sleep is time.sleep or in_flight:
            self.wake.wait(timeout)  # a finished deployment or a queued command (poke) ends the wait at once
            # Results come one at a time: let those of a burst gather, so one turn (one transaction) decides
            # on many. A deployment takes seconds; this costs a rollout nothing it would notice.
            gather = self._turned_at + self.cfg.batch_seconds - time.monotonic()
            if in_flight and gather > 0 and not self._poked:
                time.sleep(gather)
        else:
            self.cfg.sleep(timeout)  # an injected clock: its sleep moves time forward by itself
        self.wake.clear()

    def _beat(self, now: datetime) -> None:
        if self._beat_at is None or now - self._beat_at > self.cfg.lease_ttl / 3:
            try:
                heartbeat(self.cfg.store, self.cfg.holder, now, self.cfg.lease_ttl)
                self._beat_at = now
            except EstateError:
                log.warning("heartbeat failed", exc_info=True)

    def _stop_beating(self) -> None:
        try:
            stop_heartbeat(self.cfg.store, self.cfg.holder)
        except EstateError:
            log.warning("could not remove the heartbeat", exc_info=True)
