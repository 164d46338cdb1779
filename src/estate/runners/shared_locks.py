"""Per-environment locks for runners on many machines: leases in the shared store instead of `flock`.

A runner pool's workers may run anywhere, so the lock that keeps two deployments of one environment apart
cannot be a local file. Each environment's lock is a lease named `env:<project>/<env>` held by the worker
process (`host:pid`) for as long as the run may take; a worker that dies leaves it behind, and the next
one takes it over as soon as the store says the holder is gone (its pid is dead on this host, or its
heartbeat lease expired). Deployments of one environment inside one process are kept apart in memory.
The Terraform state itself must live in a shared backend (`pg`), whose own lock guards it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from estate.domain.ids import EnvRef
from estate.runners.locks import EnvironmentBusy
from estate.store import holders, leases
from estate.store.repository import Store


class StoreLocks:
    """`hold(env, what)` for the runners of one process; see the module docstring."""

    def __init__(self, store: Store, holder: str, now: Callable[[], datetime], ttl: timedelta) -> None:
        self.store = store
        self.holder = holder
        self.now = now
        self.ttl = ttl
        self._held: set[EnvRef] = set()
        self._mutex = threading.Lock()

    @contextlib.contextmanager
    def hold(self, env: EnvRef, what: str) -> Iterator[None]:
        with self._mutex:
            if env in self._held:
                raise EnvironmentBusy(str(env), f"another deployment in {self.holder}")
            self._held.add(env)
        try:
            self._acquire(env, what)
            try:
                yield
            finally:
                with self.store.begin() as conn:
                    leases.release(conn, _name(env), self.holder)
        finally:
            with self._mutex:
                self._held.discard(env)

    def _acquire(self, env: EnvRef, what: str) -> None:
        now = self.now()
        with self.store.begin() as conn:
            if leases.acquire(conn, _name(env), self.holder, now, self.ttl):
                return
            current = leases.holder(conn, _name(env), now)
            if current is not None and holders.is_gone(conn, current, now):
                leases.release(conn, _name(env), current)
                if leases.acquire(conn, _name(env), self.holder, now, self.ttl):
                    return
        raise EnvironmentBusy(str(env), f"a deployment run by {current or 'another runner'} ({what} waits)")


def _name(env: EnvRef) -> str:
    return f"env:{env}"
