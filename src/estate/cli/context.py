"""One CLI invocation's context: the application, built on first use from the process environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from rich.markup import escape

from estate.app import App, Caller, Wiring, bootstrap
from estate.cli import credentials
from estate.cli.output import stderr
from estate.cli.remote import RemoteApp
from estate.errors import InputError


@dataclass
class Context:
    """What every command needs; `app` opens (and migrates) the store on first use."""

    debug: bool = False
    quiet: bool = False  # the command prints JSON: no engine log lines on stderr
    _app: App | None = field(default=None, repr=False)

    @property
    def app(self) -> App:
        """Embedded: the application on the local store. With a server (ESTATE_URL, or `estate login`): the same
        use cases served by that `estate server` (`RemoteApp` mirrors App's interface; tests/unit/
        test_remote_facade.py keeps it so)."""
        if self._app is None:
            server = credentials.current(os.environ)
            self._app = (
                cast(App, RemoteApp(server.url, server.token, os.environ))
                if server
                else bootstrap(os.environ, Wiring(on_log=self._log))
            )
        return self._app

    @property
    def remote(self) -> bool:
        return credentials.current(os.environ) is not None

    def caller(self, given: str | None) -> Caller:
        """Embedded: `--as`, or $ESTATE_ACTOR, or the OS account (`local:<user>`). With a server the subject is
        whoever the token says, so `--as` is refused."""
        if self.remote:
            if given:
                raise InputError(
                    "--as is refused by a server: the actor is the subject your token authenticates",
                    hint="log in with that subject's token (estate login), or leave out --as",
                )
            return Caller("(token)", auth="token")  # the server decides who; this one is never sent
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
