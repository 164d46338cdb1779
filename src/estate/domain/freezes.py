"""Freezes, and what holds a wave's deployments back: a freeze of the environment's env type (or of the whole
estate), or a wave outside its change windows.

Pure: `now` comes in. A hold never stops what is already running, and never a rollback (restoring a known
version is what one wants during an incident): it only keeps new deploys from starting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from estate.domain.change_windows import ChangeWindow, describe, next_open
from estate.errors import ConflictError


class Frozen(ConflictError):
    """A new deployment would start in a frozen scope."""


@dataclass(frozen=True)
class Freeze:
    """No new deployment starts in scope (an env type, or the whole estate) until `until` or until lifted."""

    id: int
    reason: str
    created_by: str
    created_at: datetime
    env_type: str | None = None  # None: every environment
    until: datetime | None = None  # None: until someone lifts it

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def covers(self, env_type: str) -> bool:
        return self.env_type is None or self.env_type == env_type

    @property
    def scope(self) -> str:
        return "the whole estate" if self.env_type is None else f"env type {self.env_type}"

    def __str__(self) -> str:
        until = f" until {self.until:%Y-%m-%d %H:%M:%S} UTC" if self.until else ""
        return f"{self.scope} frozen by {self.created_by}{until}: {self.reason}"


def active(freezes: Sequence[Freeze], now: datetime) -> tuple[Freeze, ...]:
    return tuple(f for f in freezes if f.active(now))


@dataclass(frozen=True)
class Hold:
    """Why deploys may not start now, and when that may change by itself (None: when someone acts)."""

    reason: str
    until: datetime | None = None


def freeze_hold(freezes: Sequence[Freeze], env_type: str, now: datetime) -> Hold | None:
    """The freezes that keep a deploy to an environment of `env_type` from starting now, if any."""
    found = [f for f in freezes if f.active(now) and f.covers(env_type)]
    if not found:
        return None
    lifts = [f.until for f in found]
    until = None if any(u is None for u in lifts) else max(u for u in lifts if u is not None)
    return Hold("; ".join(str(f) for f in found), until)


def require_unfrozen(freezes: Sequence[Freeze], targets: Sequence[tuple[str, str]], now: datetime) -> None:
    """Frozen naming the first of `targets` (environment, env type) a freeze covers now."""
    for env, env_type in targets:
        hold = freeze_hold(freezes, env_type, now)
        if hold is not None:
            raise Frozen(
                f"{env} is frozen: {hold.reason}",
                hint="wait for the freeze to end, or ask an admin to lift it: estate unfreeze ...",
            )


def window_hold(windows: Sequence[ChangeWindow], now: datetime) -> Hold | None:
    """A hold until the next change window opens, when none is open now."""
    opens = next_open(windows, now)
    if opens == now:
        return None
    when = f"the next opens {opens:%Y-%m-%d %H:%M:%S} UTC" if opens else "none ever opens"
    return Hold(f"outside its change windows ({describe(windows)}); {when}", opens)
