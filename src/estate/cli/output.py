"""Rendering for humans (Rich) and machines (`--output json`), progress of long work, and shared options."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from estate.errors import EstateError, InputError


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="text for people, json for tools.")]
ActorOpt = Annotated[
    str | None, typer.Option("--as", help="Who performs this (default: $ESTATE_ACTOR or the OS account).")
]

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

COLORS = {
    "succeeded": "green",
    "failed": "red",
    "errored": "magenta",
    "interrupted": "yellow",
    "cancelled": "yellow",
    "rolled_back": "yellow",
    "rolling_back": "yellow",
    "deploying": "cyan",
    "verifying": "cyan",
    "planning": "cyan",
    "applying": "cyan",
    "queued": "dim",
    "inconclusive": "magenta",
    "skipped": "dim",
    "awaiting_promotion": "blue",
    "awaiting_approval": "blue",
    "completed": "green",
    "halted": "red",
    "aborted": "red",
    "paused": "yellow",
    "running": "cyan",
    "passed": "green",
    "approved": "green",
    "in sync": "green",
    "drifted": "yellow",
    "ok": "green",
    "refused": "red",
    "denied": "red",
    "active": "green",
    "expired": "yellow",
    "revoked": "red",
    "deprecated": "yellow",
    "defective": "red",
    "failed_wave": "red",
    "recorded": "dim",
}


def colored(text: str | None) -> str:
    text = text or ""
    color = COLORS.get(text)
    return f"[{color}]{escape(text)}[/]" if color else escape(text)


def jsonable(data: Any) -> Any:
    """Views (pydantic models) and lists of them as plain JSON values."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [jsonable(d) for d in data]
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    return data


def emit(output: Format, data: Any, render: Callable[[], None]) -> None:
    """Print `data` as JSON, or call `render` to draw it for people."""
    if output is Format.JSON:
        sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")
    else:
        render()


def report_error(error: EstateError, output: Format | None = None) -> None:
    """Errors go to stderr, as JSON too when the command asked for JSON."""
    if output is Format.JSON:
        payload: dict[str, dict[str, Any]] = {
            "error": {"type": type(error).__name__, "message": error.message, "hint": error.hint}
        }
        problems = getattr(error, "problems", None)
        if problems:
            payload["error"]["problems"] = [
                {"file": p.file, "line": p.line, "column": p.column, "path": p.path, "message": p.message}
                for p in problems
            ]
        sys.stderr.write(json.dumps(payload, indent=2) + "\n")
        return
    stderr.print(f"[bold red]error:[/] {escape(error.message)}")
    if error.hint:
        stderr.print(f"[dim]hint:[/] {escape(error.hint)}")


class LiveProgress:
    """The application's progress port drawn as a Rich bar on stderr: done/total, and how many ended how."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.outcomes: Counter[str] = Counter()
        self.label = ""

    def begin(self, label: str, total: int) -> None:
        self.label = label
        self.task = self.progress.add_task(escape(label), total=total)

    def advance(self, item: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        counts = ", ".join(f"{n} {colored(o)}" for o, n in sorted(self.outcomes.items()))
        self.progress.update(self.task, advance=1, description=f"{escape(self.label)} ({counts}) {escape(item)}")


@contextmanager
def live_progress() -> Iterator[LiveProgress]:
    """A progress bar on stderr for the duration of the block (it vanishes when the block ends)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )
    with bar:
        yield LiveProgress(bar)


def parse_labels(labels: Sequence[str]) -> dict[str, str]:
    """`key=value` options as a mapping; InputError naming a malformed one."""
    out = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label '{item}' is not of the form key=value")
        out[key] = value
    return out


_SPAN = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_span(option: str, text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s` as a timedelta; InputError naming `option` otherwise."""
    found = _SPAN.match(text.strip())
    if found is None:
        raise InputError(f"{option} {text!r}: use a number and a unit, like 90d, 12h or 30m")
    return timedelta(**{_UNIT[found.group(2)]: int(found.group(1))})


def parse_moment(option: str, text: str, now: datetime) -> datetime:
    """A span from `now` (`2h`) or an ISO 8601 time with a zone (`2027-01-04T09:00+01:00`, `...Z`)."""
    if _SPAN.match(text.strip()):
        return now + parse_span(option, text)
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{option} {text!r}: use a span like 2h or 30m, or a time like 2027-01-04T09:00Z") from None
    if found.tzinfo is None:
        raise InputError(f"{option} {text!r} has no time zone: add Z (UTC) or an offset like +01:00")
    return found
