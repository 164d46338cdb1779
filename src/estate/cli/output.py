"""Rendering for humans (Rich) and machines (`--output json`), and the shared CLI options."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from estate.errors import EstateError


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="text for people, json for tools.")]
ActorOpt = Annotated[
    str | None, typer.Option("--as", help="Who performs this (default: $ESTATE_ACTOR or the OS user).")
]

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=_default)


def emit(output: Format, data: Any, render: Callable[[], None]) -> None:
    """Print `data` as JSON, or call `render` to draw it for people."""
    if output is Format.JSON:
        sys.stdout.write(to_json(data) + "\n")
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
        sys.stderr.write(to_json(payload) + "\n")
        return
    stderr.print(f"[bold red]error:[/] {escape(error.message)}")
    if error.hint:
        stderr.print(f"[dim]hint:[/] {escape(error.hint)}")
