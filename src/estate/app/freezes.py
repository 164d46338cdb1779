"""Freezes: while one is in force, no new deployment starts in its scope (an env type, or the whole estate);
in-flight ones finish, rollbacks still run. Starting and lifting one is an admin's decision (ADR 0012)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from estate.app.access import AccessControl
from estate.app.audit import AuditTrail
from estate.app.caller import Caller
from estate.app.views.guardrails import FreezeView
from estate.domain.access import Action
from estate.domain.freezes import Freeze
from estate.errors import InputError, NotFoundError
from estate.store import Store
from estate.store.freezes import FreezeStore


class Freezes:
    """Start, lift and list freezes."""

    def __init__(
        self,
        store: Store,
        audit: AuditTrail,
        access: AccessControl,
        now: Callable[[], datetime],
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.freezes = FreezeStore(store)
        self.audit = audit
        self.access = access
        self.now = now
        self.poke = poke  # hosted: wake the engine host, so held waves hear of it at once

    def freeze(
        self, caller: Caller, *, reason: str, env_type: str | None = None, until: datetime | None = None
    ) -> FreezeView:
        """Freeze `env_type` (None: every environment) until `until` (None: until lifted)."""
        target = f"env_type:{env_type}" if env_type else "estate"
        details = {"reason": reason, "until": until.isoformat() if until else None}
        with self.audit.attempt(caller, "freeze", target, details) as attempt:
            self.access.require(caller, Action.ADMINISTER)
            now = self.now()
            if not reason.strip():
                raise InputError("a freeze needs a reason (--reason)")
            if until is not None and (until.tzinfo is None or until <= now):
                raise InputError(f"--until {until.isoformat()} is not a time in the future (with a time zone)")
            if env_type is not None and env_type not in self.store.load_estate().env_type_rank():
                raise NotFoundError(f"unknown env type '{env_type}'", hint="see `estate env list`")
            found = self.freezes.add(env_type=env_type, reason=reason, until=until, actor=caller.subject, now=now)
            attempt.details["freeze"] = found.id
        self.poke()
        return freeze_view(found)

    def unfreeze(
        self, caller: Caller, *, env_type: str | None = None, freeze_id: int | None = None
    ) -> list[FreezeView]:
        """Lift freeze `freeze_id`, or every freeze of `env_type`, or (neither given) every estate-wide freeze."""
        scope = f"freeze:{freeze_id}" if freeze_id is not None else (f"env_type:{env_type}" if env_type else "estate")
        with self.audit.attempt(caller, "unfreeze", scope) as attempt:
            self.access.require(caller, Action.ADMINISTER)
            now = self.now()
            lifted = [f for f in self.freezes.active(now) if _in_scope(f, env_type, freeze_id)]
            if not lifted:
                raise NotFoundError(f"no freeze in force for {scope.replace(':', ' ')}", hint="see `estate freezes`")
            self.freezes.lift([f.id for f in lifted], actor=caller.subject, now=now)
            attempt.details["lifted"] = [f.id for f in lifted]
        self.poke()
        return [freeze_view(f) for f in lifted]

    def list(self) -> list[FreezeView]:
        """The freezes in force now, oldest first."""
        return [freeze_view(f) for f in self.freezes.active(self.now())]


def _in_scope(freeze: Freeze, env_type: str | None, freeze_id: int | None) -> bool:
    if freeze_id is not None:
        return freeze.id == freeze_id
    return freeze.env_type == env_type


def freeze_view(f: Freeze) -> FreezeView:
    return FreezeView(
        id=f.id,
        scope=f"env_type:{f.env_type}" if f.env_type else "estate",
        env_type=f.env_type,
        reason=f.reason,
        until=f.until,
        created_by=f.created_by,
        created_at=f.created_at,
        text=str(f),
    )
