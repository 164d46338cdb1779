"""Wiring: the one place that builds settings, the store and the clock for a CLI invocation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from estate.settings import Settings
from estate.store import Store


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    """What every command needs; the store opens (and migrates) on first use."""

    settings: Settings
    debug: bool = False
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.database_url)
        return self._store

    def actor(self, given: str | None) -> str:
        return given or self.settings.actor

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


_current: Context | None = None


def set_context(ctx: Context) -> None:
    global _current  # noqa: PLW0603 - one context per process invocation, set by main()
    _current = ctx


def get_context() -> Context:
    if _current is None:
        set_context(Context(Settings.from_environ()))
    assert _current is not None
    return _current
