"""Read the estate: `env list`, `module list|usage|publish`, `plan list|show`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from estate.cli.context import get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, colored, emit, parse_labels, stdout

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
        table = Table("environment", "type", "owner", "labels", "flags", box=None)
        for e in envs:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items()))
            flags = ", ".join(f"{f.module} {f.version} {colored(f.lifecycle)}" for f in e.flagged)
            table.add_row(escape(e.ref), e.type, escape(e.owner), escape(labels), flags)
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
            shown = [
                v.version + ("" if v.lifecycle == "published" else f" ({colored(v.lifecycle)})") for v in m.versions
            ]
            table.add_row(m.id, m.resource_type, ", ".join(shown))
        stdout.print(table)
        for m in modules:
            for v in m.versions:
                if v.lifecycle != "published":
                    by = f" by {escape(v.lifecycle_by)}" if v.lifecycle_by else ""
                    stdout.print(f"{m.id} {v.version} {colored(v.lifecycle)}{by}: {escape(v.lifecycle_reason)}")

    emit(output, modules, render)


@module_app.command("usage")
def module_usage_cmd(module: str, output: OutputOpt = Format.TEXT) -> None:
    """Impact analysis: which environments use MODULE, at which version, by env type and owner.

    Answers "which environments would an update touch?" before you start a rollout.
    """
    view = get_context().app.inventory.usage(module)

    def render() -> None:
        table = Table("env type", "environment", "owner", "resource", "version", "decided by", "lifecycle", box=None)
        for row in view.environments:
            lifecycle = "" if row.lifecycle in (None, "published") else colored(row.lifecycle)
            table.add_row(
                row.env_type, row.env, escape(row.owner), row.resource, row.version, row.rule_scope, lifecycle
            )
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
        if view.flagged:
            stdout.print(f"[red]on a deprecated or defective version:[/] {', '.join(view.flagged)}")

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


ReasonOpt = Annotated[str, typer.Option(help="Why (recorded with the version and in the audit trail).")]


def _lifecycle(module: str, version: str, lifecycle: str, reason: str, actor: str | None, output: Format) -> None:
    ctx = get_context()
    view = ctx.app.inventory.set_lifecycle(ctx.caller(actor), module, version, lifecycle, reason)
    emit(
        output,
        view,
        lambda: stdout.print(f"{module} {version} is {colored(view.lifecycle)}: {escape(view.lifecycle_reason)}"),
    )


@module_app.command("deprecate")
def module_deprecate(
    module: str, version: str, reason: ReasonOpt, actor: ActorOpt = None, output: OutputOpt = Format.TEXT
) -> None:
    """Mark MODULE VERSION deprecated: deploying it still works, with a warning (admin)."""
    _lifecycle(module, version, "deprecated", reason, actor, output)


@module_app.command("mark-defective")
def module_mark_defective(
    module: str, version: str, reason: ReasonOpt, actor: ActorOpt = None, output: OutputOpt = Format.TEXT
) -> None:
    """Mark MODULE VERSION defective: every new deployment of it, rollout start and retarget is refused (admin).

    Environments still on it are flagged by `module usage` and `env list`; rolling back to it stays possible.
    """
    _lifecycle(module, version, "defective", reason, actor, output)


@module_app.command("restore")
def module_restore(
    module: str, version: str, reason: ReasonOpt, actor: ActorOpt = None, output: OutputOpt = Format.TEXT
) -> None:
    """Make a deprecated or defective MODULE VERSION published again (admin)."""
    _lifecycle(module, version, "published", reason, actor, output)


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
