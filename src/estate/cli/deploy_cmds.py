"""`estate deploy`, `estate deployment list|show|logs`, `estate rollback`, `estate drift`.

Long work shows a progress bar on stderr; stdout carries only the result (one summary table for several
environments), so `--output json` stays parseable. Sensitive outputs print as `(sensitive)`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from estate.app.views.deployments import BatchView, DeploymentView, DriftReport
from estate.cli.context import get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, colored, emit, live_progress, stderr, stdout
from estate.domain.ids import EnvRef
from estate.errors import InputError, OperationFailed

deployment_app = typer.Typer(help="Deployment history: list, show, logs.", no_args_is_help=True)

_ACTION = {
    "create": "[green]+[/]",
    "update": "[yellow]~[/]",
    "delete": "[red]-[/]",
    "replace": "[red]-/+[/]",
    "read": "[dim]<=[/]",
}


def _render_one(d: DeploymentView) -> None:
    stdout.print(
        f"deployment [bold]{d.id}[/] {d.kind} of {d.env}: {colored(d.status)}"
        + (f" — {escape(d.reason)}" if d.reason else "")
    )
    if d.plan is not None:
        stdout.print(f"  plan: {d.plan.add} to add, {d.plan.change} to change, {d.plan.remove} to destroy")
        for c in d.plan.changes:
            stdout.print(f"    {_ACTION.get(c.action, c.action)} {escape(c.address)}")
    for key, value in d.outputs.items():
        stdout.print(f"  {escape(key)} = {escape(json.dumps(value))}")


def _render_batch(batch: BatchView) -> None:
    """One environment in detail; several as one summary table."""
    if len(batch.deployments) == 1:
        _render_one(batch.deployments[0])
        return
    table = Table("deployment", "environment", "kind", "status", "plan", "note", box=None)
    for d in batch.deployments:
        plan = f"+{d.plan.add} ~{d.plan.change} -{d.plan.remove}" if d.plan else ""
        table.add_row(str(d.id), d.env, d.kind, colored(d.status), plan, escape(d.reason or ""))
    stdout.print(table)


def _finish(batch: BatchView, output: Format) -> None:
    for warning in batch.warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")
    data = batch.deployments[0] if len(batch.deployments) == 1 else batch.deployments
    emit(output, data, lambda: _render_batch(batch))
    if batch.problem:
        raise OperationFailed(batch.problem, hint="see `estate deployment logs ID` for the full event log")


def deploy(
    envs: Annotated[list[str], typer.Argument(metavar="PROJECT/ENV...", help="One or more environments.")],
    plan_only: Annotated[bool, typer.Option("--plan-only", help="Plan and record it; change nothing.")] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Deploy environments with Terraform/OpenTofu: init, plan to a file, apply that plan.

    Several environments run in parallel (runner.max_parallel). Exit 1 if any deployment fails.
    Example: estate deploy checkout/eph-1 --plan-only
    """
    ctx = get_context()
    refs = [EnvRef.parse(e) for e in envs]
    with live_progress() as progress:
        batch = ctx.app.deployments.deploy(ctx.caller(actor), refs, plan_only=plan_only, progress=progress)
    _finish(batch, output)


def rollback(
    env: Annotated[str, typer.Argument(metavar="PROJECT/ENV")],
    to: Annotated[int, typer.Option("--to", metavar="DEPLOYMENT_ID", help="The deployment to return to.")],
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Re-apply an earlier deployment's resolved graph (same module versions and inputs).

    Recorded as a new deployment of kind `rollback`. Example: estate rollback checkout/eph-1 --to 12
    """
    ctx = get_context()
    _finish(ctx.app.deployments.rollback(ctx.caller(actor), EnvRef.parse(env), to), output)


def _render_drift(report: DriftReport) -> None:
    table = Table("environment", "state", "deployment", "what differs", box=None)
    for row in report.envs:
        if row.status != "succeeded":
            state, what = colored(row.status), escape(row.reason or "check failed")
        else:
            state = colored("drifted" if row.drifted else "in sync")
            what = ", ".join(
                f"{_ACTION.get(c.action, c.action)} {escape(c.address)}" for c in row.out_of_band + row.changes
            )
        table.add_row(row.env, state, str(row.deployment), what)
    stdout.print(table)


def drift(
    env: Annotated[str | None, typer.Argument(metavar="[PROJECT/ENV]")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Check every environment of the estate.")] = False,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 1 when anything drifted.")] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Plan environments against their current configuration and report which drifted and how.

    Each check is recorded as a `plan` deployment. Example: estate drift --all
    """
    if (env is None) == (not all_):
        raise InputError("give one PROJECT/ENV or --all")
    ctx = get_context()
    refs = [EnvRef.parse(env)] if env else None
    with live_progress() as progress:
        report = ctx.app.deployments.drift(ctx.caller(actor), refs, fail_on_drift=fail_on_drift, progress=progress)
    emit(output, report.envs, lambda: _render_drift(report))
    if report.problem:
        raise OperationFailed(report.problem)


@deployment_app.command("list")
def deployment_list(
    env: Annotated[str | None, typer.Argument(metavar="[PROJECT/ENV]")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    output: OutputOpt = Format.TEXT,
) -> None:
    """List deployments, newest first. Example: estate deployment list checkout/eph-1"""
    found = get_context().app.deployments.list(EnvRef.parse(env) if env else None, limit=limit)

    def render() -> None:
        table = Table("id", "environment", "kind", "status", "versions", "by", "updated", box=None)
        for d in found:
            table.add_row(
                str(d.id),
                d.env,
                d.kind,
                colored(d.status),
                ", ".join(d.versions.values()),
                escape(d.triggered_by),
                f"{d.updated_at:%m-%d %H:%M:%S}",
            )
        stdout.print(table)

    emit(output, found, render)


@deployment_app.command("show")
def deployment_show(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], output: OutputOpt = Format.TEXT
) -> None:
    """Show a deployment: graph, status transitions, plan summary, outputs (sensitive ones masked)."""
    d = get_context().app.deployments.show(deployment_id)

    def render() -> None:
        _render_one(d)
        stdout.print(
            f"  triggered by {escape(d.triggered_by)}"
            + (f" (rollout {d.rollout_id})" if d.rollout_id else "")
            + (f", {d.tool_version}" if d.tool_version else "")
            + (f", runner pool {escape(d.pool)}" if d.pool else "")
            + (f"; redone as deployment {d.retried_by}" if d.retried_by else "")
        )
        for r in d.graph["resources"]:
            stdout.print(f"  resource [bold]{r['alias']}[/]: {r['module']}@{r['version']} from {escape(r['source'])}")
            for name, value in {**r["inputs"], **r["references"]}.items():
                stdout.print(f"    {name} = {escape(json.dumps(value))}")
        if d.plan is not None and d.plan.destructive:
            stdout.print(
                "  [red]destructive:[/] " + ", ".join(f"{c.action} {escape(c.address)}" for c in d.plan.destructive)
            )
        stdout.print("  " + " -> ".join(f"{t.status} {t.at:%H:%M:%S}" for t in d.transitions))

    emit(output, d, render)


@deployment_app.command("logs")
def deployment_logs(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the deployment ends.")] = False,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Print a deployment's event log; `--output json` prints the raw events, one JSON object per line."""
    deployments = get_context().app.deployments
    last = -1
    while True:
        chunk = deployments.log(deployment_id, after=last)
        for entry in chunk.events:
            last = entry.seq
            if output is Format.JSON:
                sys.stdout.write(json.dumps(entry.event) + "\n")
            else:
                stdout.print(escape(entry.text))
        sys.stdout.flush()
        if chunk.done or not follow:
            return
        time.sleep(0.5)


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.command()(rollback)
    app.command()(drift)
    app.add_typer(deployment_app, name="deployment")
