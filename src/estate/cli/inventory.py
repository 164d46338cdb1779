"""Read the estate: `env list`, `module list|usage|publish`, `plan list|show`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from estate.cli.context import get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, emit, parse_labels, stdout

env_app = typer.Typer(help="Environments of the estate.", no_args_is_help=True)
module_app = typer.Typer(help="Modules, their versions, and impact analysis.", no_args_is_help=True)
plan_app = typer.Typer(help="Rollout plans (waves, gates, policies).", no_args_is_help=True)


@env_app.command("list")
def env_list(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this env type.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value; repeat to AND several.")] = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """List environments, ordered by env type rank. Example: estate env list --type production --label region=eu"""
    envs = get_context().app.inventory.environments(project=project, env_type=type_, labels=parse_labels(label or []))

    def render() -> None:
        table = Table("environment", "type", "owner", "labels", box=None)
        for e in envs:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items()))
            table.add_row(escape(e.ref), e.type, escape(e.owner), escape(labels))
        stdout.print(table)
        stdout.print(f"[dim]{len(envs)} environment(s)[/]")

    emit(output, envs, render)


@module_app.command("list")
def module_list(output: OutputOpt = Format.TEXT) -> None:
    """List modules with their published versions (newest last)."""
    modules = get_context().app.inventory.modules()

    def render() -> None:
        table = Table("module", "resource type", "versions", box=None)
        for m in modules:
            table.add_row(m.id, m.resource_type, ", ".join(v.version for v in m.versions))
        stdout.print(table)

    emit(output, modules, render)


@module_app.command("usage")
def module_usage_cmd(module: str, output: OutputOpt = Format.TEXT) -> None:
    """Impact analysis: which environments use MODULE, at which version, by env type and owner.

    Answers "which environments would an update touch?" before you start a rollout.
    """
    view = get_context().app.inventory.usage(module)

    def render() -> None:
        table = Table("env type", "environment", "owner", "resource", "version", "decided by", box=None)
        for row in view.environments:
            table.add_row(row.env_type, row.env, escape(row.owner), row.resource, row.version, row.rule_scope)
        stdout.print(table)
        totals = view.totals
        for title, counts in (
            ("by version", totals.version),
            ("by env type", totals.env_type),
            ("by owner", totals.owner),
        ):
            stdout.print(f"[bold]{title}:[/] " + ", ".join(f"{escape(k)} {v}" for k, v in counts.items()))
        if view.unresolved:
            stdout.print(f"[yellow]no rule picks a {module} version for:[/] {', '.join(view.unresolved)}")

    emit(output, view, render)


@module_app.command("publish")
def module_publish(
    module: str,
    version: str,
    source: Annotated[str, typer.Option(help="./path, git::file:///repo?ref=vX, or a registry address.")],
    inputs_from: Annotated[
        str | None,
        typer.Option("--inputs-from", help="Copy the inputs of this published version (default: the newest)."),
    ] = None,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Publish an immutable MODULE VERSION. Example: estate module publish postgres 2.0.1 --source ./pg-2.0.1

    Re-publishing the identical version is a no-op; a different source for a published version is refused.
    """
    ctx = get_context()
    view = ctx.app.inventory.publish(ctx.caller(actor), module, version, source, inputs_from=inputs_from)
    said = f"published {module} {version}" if view.created else f"{module} {version} already published (unchanged)"
    emit(output, view, lambda: stdout.print(said))


@plan_app.command("list")
def plan_list(output: OutputOpt = Format.TEXT) -> None:
    """List rollout plans and their waves."""
    plans = get_context().app.inventory.plans()

    def render() -> None:
        table = Table("plan", "waves", "description", box=None)
        for p in plans:
            table.add_row(p.id, " -> ".join(p.waves), escape(p.description))
        stdout.print(table)

    emit(output, plans, render)


@plan_app.command("show")
def plan_show(plan_id: Annotated[str, typer.Argument(metavar="PLAN")], output: OutputOpt = Format.TEXT) -> None:
    """Show a plan's waves and which environments each would take now (first matching wave wins)."""
    view = get_context().app.inventory.plan(plan_id)

    def render() -> None:
        stdout.print(f"[bold]{view.id}[/] {escape(view.description)}")
        for i, w in enumerate(view.waves, 1):
            stdout.print(
                f"  {i}. [bold]{w.name}[/] max_parallel={w.max_parallel} tolerance={w.failure_tolerance} "
                f"on_failure={w.on_failure}{' auto_promote' if w.auto_promote else ''}"
            )
            for gate in w.gates:
                stdout.print(f"     gate: {escape(gate)}")
            stdout.print(f"     {', '.join(w.environments) or '[dim](no environments)[/]'}")

    emit(output, view, render)


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")
    app.add_typer(module_app, name="module")
    app.add_typer(plan_app, name="plan")
