"""The audit trail: every request that changes or tries to change something leaves one entry, whatever came
of it (done, refused, failed), written by the use case itself so no entry point can forget it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from estate.app.caller import Caller
from estate.app.views.audit import AuditEntryView
from estate.errors import EstateError, Forbidden, InputError, Refused, Unauthenticated
from estate.store import Store
from estate.store import audit as entries
from estate.store.audit import AuditEntry, AuditFilter

__all__ = ["Attempt", "AuditFilter", "AuditTrail"]


@dataclass
class Attempt:
    """What a use case says about its request while it runs; recorded when it ends."""

    target: str
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    reason: str = ""


class AuditTrail:
    """Records attempts and lists entries."""

    def __init__(self, store: Store, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    @contextmanager
    def attempt(
        self, caller: Caller, action: str, target: str, details: Mapping[str, Any] | None = None
    ) -> Iterator[Attempt]:
        """Record one entry when the block ends: `ok` (or what the block set), `denied` when the caller lacked the
        role, `refused` for bad input or a command the state machine refused, `failed` for any other error (which
        is re-raised)."""
        attempt = Attempt(target, dict(details or {}))
        try:
            yield attempt
        except EstateError as exc:
            attempt.outcome = _outcome(exc)
            attempt.reason = exc.message
            self.record(caller, action, attempt)
            raise
        self.record(caller, action, attempt)

    @contextmanager
    def refusals(self, caller: Caller, action: str, target: str) -> Iterator[None]:
        """Record an entry only if the block refuses (a check made before the work itself, e.g. before a job
        is queued: the work records its own entry when it runs)."""
        try:
            yield
        except EstateError as exc:
            self.record(caller, action, Attempt(target, outcome=_outcome(exc), reason=exc.message))
            raise

    def record(self, caller: Caller, action: str, attempt: Attempt) -> None:
        """Append one entry (no entry is ever changed or deleted)."""
        entry = AuditEntry(
            at=self.now(),
            actor=caller.subject,
            action=action,
            target=attempt.target,
            outcome=attempt.outcome,
            reason=attempt.reason,
            auth=caller.auth,
            source=caller.source,
            request_id=caller.request_id,
            details=attempt.details,
        )
        with self.store.begin() as conn:
            entries.append(conn, entry)

    def entries(self, wanted: AuditFilter) -> list[AuditEntryView]:
        """Matching entries, newest first."""
        with self.store.connect() as conn:
            found = entries.query(conn, wanted)
        return [AuditEntryView(id=i, **{**e.__dict__, "details": dict(e.details)}) for i, e in found]


def _outcome(error: EstateError) -> str:
    if isinstance(error, Forbidden | Unauthenticated):
        return "denied"
    return "refused" if isinstance(error, InputError | Refused) else "failed"
