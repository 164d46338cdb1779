"""Repeated failed authentications from one address are slowed down: after `limit` failures within `window`
seconds, that address gets 429 until the window has passed (a success clears its count)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from estate.errors import Throttled


class AuthThrottle:
    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Throttled while `address` has `limit` recent failures."""
        with self._lock:
            recent = self._recent(address)
            if len(recent) >= self.limit:
                wait = int(recent[0] + self.window - self.clock()) + 1
                raise Throttled(f"too many failed authentications from {address}", retry_after=max(wait, 1))

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self.clock())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        found = self._failures.setdefault(address, deque())
        while found and found[0] <= self.clock() - self.window:
            found.popleft()
        return found
