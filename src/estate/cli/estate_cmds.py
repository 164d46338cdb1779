"""`estate init`, `estate apply`, `estate schema`: estate-as-code in and out of the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from estate.cli.context import get_context, utcnow
from estate.cli.output import ActorOpt, Format, OutputOpt, emit, stdout
from estate.config import json_schema, load_estate
from estate.store import Action, Change, SyncPlan

_SYMBOL = {Action.ADD: "[green]+[/]", Action.CHANGE: "[yellow]~[/]", Action.REMOVE: "[red]-[/]"}


def init(output: OutputOpt = Format.TEXT) -> None:
    """Create $ESTATE_HOME and the database (idempotent)."""
    ctx = get_context()
    ctx.settings.home.mkdir(parents=True, exist_ok=True)
    _ = ctx.store
    data = {"home": str(ctx.settings.home), "database": ctx.settings.database_url}
    emit(output, data, lambda: stdout.print(f"initialized {data['database']}"))


def _sync_json(plan: SyncPlan, applied: bool) -> dict[str, object]:
    def rows(changes: tuple[Change, ...]) -> list[dict[str, object]]:
        return [{"kind": c.kind, "key": c.key, "action": str(c.action), "fields": list(c.fields)} for c in changes]

    return {"applied": applied, "changes": rows(plan.changes), "held_for_prune": rows(plan.held)}


def _render_sync(plan: SyncPlan, applied: bool, dry_run: bool) -> None:
    if plan.empty:
        stdout.print("no changes: the store already matches the files")
    for c in plan.changes:
        detail = f" ({', '.join(c.fields)})" if c.fields else ""
        stdout.print(f"  {_SYMBOL[c.action]} {c.kind} {c.key}{detail}")
    for c in plan.held:
        stdout.print(f"  [dim]= {c.kind} {c.key} is not in the files; kept (use --prune to remove)[/]")
    if plan.changes:
        counts = {a: sum(1 for c in plan.changes if c.action is a) for a in Action}
        summary = f"{counts[Action.ADD]} to add, {counts[Action.CHANGE]} to change, {counts[Action.REMOVE]} to remove"
        stdout.print(
            f"{'applied' if applied else 'dry run, nothing written'}: {summary}" if dry_run or applied else summary
        )


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
    store = ctx.store
    loaded = load_estate(file, store.published_versions())
    plan = store.sync(loaded.estate, prune=prune, force=force, dry_run=dry_run, actor=ctx.actor(actor), now=utcnow())
    applied = not dry_run and not plan.empty
    emit(output, _sync_json(plan, applied), lambda: _render_sync(plan, applied, dry_run))


def schema(output: OutputOpt = Format.JSON) -> None:
    """Print the JSON Schema of the estate-as-code format (for editors and CI linters)."""
    text = json.dumps(json_schema(), indent=2)
    if output is Format.JSON:
        typer.echo(text)
    else:
        stdout.print_json(text)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(apply)
    app.command()(schema)
