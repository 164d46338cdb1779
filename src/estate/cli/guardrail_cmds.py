"""`estate freeze`, `estate unfreeze`, `estate freezes`: stop new deployments in an env type (or everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from estate.app.views.guardrails import FreezeView
from estate.cli.context import get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, emit, parse_moment, stderr, stdout

EnvTypeOpt = Annotated[str | None, typer.Option("--env-type", help="Only this env type (default: every environment).")]


def freeze(
    reason: Annotated[str, typer.Option(help="Why (shown in every status).")],
    env_type: EnvTypeOpt = None,
    until: Annotated[
        str | None, typer.Option(help="When it ends by itself: a span (2h, 1d) or a time (2027-01-04T09:00Z).")
    ] = None,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Freeze an env type (or every environment): no new deployment starts there until it ends or is lifted.

    In-flight deployments finish, rollbacks still run, and rollouts wait (their status says why and until when).
    Example: estate freeze --env-type production --reason "incident 4711" --until 4h
    """
    ctx = get_context()
    moment = parse_moment("--until", until, datetime.now(UTC)) if until else None
    view = ctx.app.freezes.freeze(ctx.caller(actor), reason=reason, env_type=env_type, until=moment)
    emit(output, view, lambda: stdout.print(f"freeze {view.id}: {escape(view.text)}"))


def unfreeze(
    env_type: EnvTypeOpt = None,
    freeze_id: Annotated[int | None, typer.Option("--id", help="Lift this freeze (see `estate freezes`).")] = None,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Lift a freeze: the one given by --id, those of --env-type, or (neither given) the estate-wide ones.

    Held rollouts carry on when an engine drives them: the server's at once; embedded, the next command to the
    rollout (e.g. `estate rollout resume R`) or `estate engine run`.
    """
    ctx = get_context()
    lifted = ctx.app.freezes.unfreeze(ctx.caller(actor), env_type=env_type, freeze_id=freeze_id)

    def render() -> None:
        for f in lifted:
            stdout.print(f"lifted freeze {f.id}: {escape(f.text)}")

    emit(output, lifted, render)


def freezes(output: OutputOpt = Format.TEXT) -> None:
    """The freezes in force now."""
    found = get_context().app.freezes.list()

    def render() -> None:
        if not found:
            stderr.print("no freeze in force")
            return
        render_freezes(found)

    emit(output, found, render)


def render_freezes(found: list[FreezeView]) -> None:
    table = Table("id", "scope", "until", "by", "reason", box=None)
    for f in found:
        until = f"{f.until:%Y-%m-%d %H:%M:%S} UTC" if f.until else "lifted by hand"
        table.add_row(str(f.id), f.scope, until, escape(f.created_by), escape(f.reason))
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command()(freeze)
    app.command()(unfreeze)
    app.command()(freezes)
