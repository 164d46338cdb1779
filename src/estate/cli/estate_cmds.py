"""`estate init`, `estate apply`, `estate schema`, `estate audit`: estate-as-code in and out of the store,
and the audit trail."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from estate.app.audit import AuditFilter
from estate.app.views.inventory import ApplyView, SyncChangeView
from estate.cli.context import get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, colored, emit, stdout

_SYMBOL = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]"}


def init(output: OutputOpt = Format.TEXT) -> None:
    """Create $ESTATE_HOME and the database (idempotent)."""
    view = get_context().app.inventory.init()
    emit(output, view, lambda: stdout.print(f"initialized {view.database}"))


def _render_apply(view: ApplyView, dry_run: bool) -> None:
    if not view.changes:
        stdout.print("no changes: the store already matches the files")
    for c in view.changes:
        detail = f" ({', '.join(c.fields)})" if c.fields else ""
        stdout.print(f"  {_SYMBOL[c.action]} {c.kind} {c.key}{detail}")
    for c in view.held_for_prune:
        stdout.print(f"  [dim]= {c.kind} {c.key} is not in the files; kept (use --prune to remove)[/]")
    if view.changes:
        summary = _counts(view.changes)
        stdout.print(f"{'dry run, nothing written' if dry_run else 'applied'}: {summary}")


def _counts(changes: list[SyncChangeView]) -> str:
    n = {a: sum(1 for c in changes if c.action == a) for a in ("add", "change", "remove")}
    return f"{n['add']} to add, {n['change']} to change, {n['remove']} to remove"


def apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="A YAML file or a directory of *.yaml files.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff; write nothing.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Remove objects that are no longer in the files.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --prune: also drop environments that have deployment history.")
    ] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Validate estate-as-code and sync it into the store in one transaction (all or nothing).

    Objects missing from the files are kept unless --prune is given; an environment with deployment
    history is never pruned without --force. Published module versions are immutable and never removed.
    Example: estate apply -f examples/estate --dry-run
    """
    ctx = get_context()
    view = ctx.app.inventory.apply(ctx.caller(actor), file, dry_run=dry_run, prune=prune, force=force)
    emit(output, view, lambda: _render_apply(view, dry_run))


def schema(output: OutputOpt = Format.JSON) -> None:
    """Print the JSON Schema of the estate-as-code format (for editors and CI linters)."""
    text = json.dumps(get_context().app.inventory.schema(), indent=2)
    if output is Format.JSON:
        typer.echo(text)
    else:
        stdout.print_json(text)


def audit(
    actor: Annotated[str | None, typer.Option("--subject", help="Only what this subject asked for.")] = None,
    rollout: Annotated[str | None, typer.Option(help="Only commands to this rollout.")] = None,
    env: Annotated[
        str | None, typer.Option(metavar="PROJECT/ENV", help="Only requests about this environment.")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Only entries at or after this time (ISO 8601).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only entries before this time (ISO 8601).")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok, refused, failed or denied.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    output: OutputOpt = Format.TEXT,
) -> None:
    """The audit trail: every request that changed or tried to change something, newest first.

    Example: estate audit --rollout postgres-1 --outcome refused
    """
    targets = tuple(t for t in (f"rollout:{rollout}" if rollout else None, f"env:{env}" if env else None) if t)
    wanted = AuditFilter(actor=actor, targets=targets, since=since, until=until, outcome=outcome, limit=limit)
    entries = get_context().app.audit.entries(wanted)

    def render() -> None:
        table = Table("at", "subject", "action", "target", "outcome", "reason", box=None)
        for e in entries:
            table.add_row(
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                escape(e.actor),
                escape(e.action),
                escape(e.target),
                colored(e.outcome),
                escape(e.reason[:120]),
            )
        stdout.print(table)

    emit(output, entries, render)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(apply)
    app.command()(schema)
    app.command()(audit)
