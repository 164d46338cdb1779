"""One CLI invocation's context: the application, built on first use from the process environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

from rich.markup import escape

from estate.app import App, Caller, Wiring, bootstrap
from estate.cli.output import stderr


@dataclass
class Context:
    """What every command needs; `app` opens (and migrates) the store on first use."""

    debug: bool = False
    quiet: bool = False  # the command prints JSON: no engine log lines on stderr
    _app: App | None = field(default=None, repr=False)

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = bootstrap(os.environ, Wiring(on_log=self._log))
        return self._app

    def caller(self, given: str | None) -> Caller:
        """The subject of this invocation: `--as`, or $ESTATE_ACTOR, or the OS account."""
        return Caller(given or self.app.settings.actor)

    def _log(self, rollout_id: str, line: str) -> None:
        if not self.quiet:
            now = self.app.wiring.now()
            stderr.print(f"[dim]{_clock(now)}[/] [bold]{escape(rollout_id)}[/] {escape(line)}")

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def _clock(now: datetime) -> str:
    return f"{now:%H:%M:%S}"


_current: Context | None = None


def set_context(ctx: Context) -> None:
    global _current  # noqa: PLW0603 - one context per process invocation, set by main()
    _current = ctx


def get_context() -> Context:
    if _current is None:
        set_context(Context())
    assert _current is not None
    return _current
