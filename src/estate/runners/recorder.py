"""Append a deployment's events to the store in small batches, and tell a listener as they come.

Chatty events (text lines, per-resource plan/refresh/progress lines) are written in batches, which
keeps SQLite writes few; any other event (a step, apply start/complete, a diagnostic, a summary)
flushes at once, so `estate deployment logs --follow` never waits behind a quiet Terraform.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from estate.runners.events import Collector, Raw, TerraformEvent, estate_event
from estate.store.deployments import DeploymentRepository

_BATCH = 50
_MAX_DELAY = 0.5  # seconds a chatty event may wait in the buffer while more arrive
_CHATTY = frozenset(
    {
        "estate.text",
        "planned_change",
        "refresh_start",
        "refresh_complete",
        "apply_progress",
        "provision_progress",
        "provision_start",
        "provision_complete",
    }
)


class EventRecorder:
    def __init__(
        self,
        repo: DeploymentRepository,
        deployment_id: int,
        listener: Callable[[int, TerraformEvent], None] | None = None,
    ) -> None:
        self.repo = repo
        self.deployment_id = deployment_id
        self.listener = listener
        self._buffer: list[dict[str, Any]] = []
        self._seq = repo.next_seq(deployment_id)
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def sink(self, collector: Collector | None = None) -> Callable[[TerraformEvent, Raw], None]:
        def take(event: TerraformEvent, raw: Raw) -> None:
            if collector is not None:
                collector.add(event)
            self.record(event, raw)

        return take

    def record(self, event: TerraformEvent, raw: Raw) -> None:
        with self._lock:
            self._buffer.append(raw)
            due = (
                event.type not in _CHATTY
                or len(self._buffer) >= _BATCH
                or time.monotonic() - self._last_flush > _MAX_DELAY
            )
        if self.listener is not None:
            self.listener(self.deployment_id, event)
        if due:
            self.flush()

    def error(self, message: str) -> None:
        self.record(TerraformEvent("estate.error", "error", message), estate_event("error", message, level="error"))

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
            first, self._seq = self._seq, self._seq + len(batch)
            self._last_flush = time.monotonic()
            if batch:
                self.repo.append_events(self.deployment_id, first, batch)
