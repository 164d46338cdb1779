"""`estate deploy`, `estate deployment list|show|logs`, `estate rollback`, `estate drift`.

Long work shows progress on stderr (Rich status); stdout carries only the result, so
`--output json` stays parseable. Sensitive outputs print as `(sensitive)`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import wait
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from estate.cli.context import Context, get_context, utcnow
from estate.cli.output import ActorOpt, Format, OutputOpt, emit, stderr, stdout
from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus
from estate.domain.graph import resolve_graph
from estate.domain.ids import EnvRef
from estate.errors import InputError, OperationFailed
from estate.runners import DeploymentService, LocalPool
from estate.runners.events import Event, describe
from estate.store.codec import encode
from estate.store.deployments import DeploymentRepository

deployment_app = typer.Typer(help="Deployment history: list, show, logs.", no_args_is_help=True)

_STATUS_STYLE = {
    DeploymentStatus.SUCCEEDED: "green",
    DeploymentStatus.FAILED: "red",
    DeploymentStatus.CANCELLED: "yellow",
    DeploymentStatus.QUEUED: "dim",
    DeploymentStatus.PLANNING: "cyan",
    DeploymentStatus.APPLYING: "cyan",
}
_ACTION = {
    "create": "[green]+[/]",
    "update": "[yellow]~[/]",
    "delete": "[red]-[/]",
    "replace": "[red]-/+[/]",
    "read": "[dim]<=[/]",
}


def _ref(text: str) -> EnvRef:
    try:
        return EnvRef.parse(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


@contextmanager
def _service(ctx: Context, label: str) -> Iterator[DeploymentService]:
    """A service whose Terraform events drive a one-line progress display on stderr."""
    with stderr.status(escape(label)) as status:

        def progress(deployment_id: int, event: Event) -> None:
            if event.type not in ("estate.text", "version", "log") and event.message:
                status.update(escape(f"#{deployment_id} {event.message}"[:160]))

        service = DeploymentService(ctx.store, ctx.settings, now=utcnow, listener=progress)
        service.recover()
        yield service


def _create_all(service: DeploymentService, refs: list[EnvRef], kind: DeploymentKind, actor: str) -> list[int]:
    """Resolve every graph first, so one bad environment leaves no queued orphans behind."""
    estate = service.repo.load_estate()
    graphs = [resolve_graph(estate, ref) for ref in refs]
    return [service.create(g.env, kind, triggered_by=actor, graph=g) for g in graphs]


def _run_all(service: DeploymentService, ids: list[int]) -> list[Deployment]:
    if len(ids) == 1:
        return [service.run(ids[0])]
    with LocalPool(service, service.config.max_parallel) as pool:
        futures = [pool.submit(i) for i in ids]
        wait(futures)  # let every deployment finish before reporting one that raised (e.g. busy)
        return [f.result() for f in futures]


def _summary_json(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "env": str(d.env),
        "kind": str(d.kind),
        "status": str(d.status),
        "reason": d.reason,
        "triggered_by": d.triggered_by,
        "rollout_id": d.rollout_id,
        "versions": d.graph.versions(),
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def deployment_json(d: Deployment) -> dict[str, Any]:
    """Everything recorded about a deployment except its events; sensitive values masked."""
    summary = d.plan_summary
    return {
        **_summary_json(d),
        "tool_version": d.tool_version,
        "graph": encode(d.graph),
        "transitions": [{"status": str(t.status), "at": t.at} for t in d.transitions],
        "plan": None
        if summary is None
        else {
            "add": summary.add,
            "change": summary.change,
            "remove": summary.remove,
            "changes": [{"address": c.address, "action": c.action} for c in summary.changes],
            "destructive": [{"address": c.address, "action": c.action} for c in summary.destructive],
            "drift": [{"address": c.address, "action": c.action} for c in summary.drift],
        },
        "outputs": {k: v.display() for k, v in sorted(d.outputs.items())},
    }


def _render_outcome(d: Deployment) -> None:
    style = _STATUS_STYLE[d.status]
    stdout.print(
        f"deployment [bold]{d.id}[/] {d.kind} of {d.env}: [{style}]{d.status}[/]"
        + (f" — {escape(d.reason)}" if d.reason else "")
    )
    if d.plan_summary is not None:
        stdout.print(f"  plan: {d.plan_summary}")
        for c in d.plan_summary.changes:
            stdout.print(f"    {_ACTION.get(c.action, c.action)} {escape(c.address)}")
    for key, value in sorted(d.outputs.items()):
        stdout.print(f"  {escape(key)} = {escape(json.dumps(value.display()))}")


def _render_outcomes(results: list[Deployment]) -> None:
    for d in results:
        _render_outcome(d)


def _finish(results: list[Deployment], output: Format) -> None:
    data = [deployment_json(d) for d in results]
    emit(output, data[0] if len(data) == 1 else data, lambda: _render_outcomes(results))
    failed = [d for d in results if d.status is not DeploymentStatus.SUCCEEDED]
    if failed:
        what = "; ".join(f"deployment {d.id} of {d.env} {d.status}: {d.reason}" for d in failed)
        raise OperationFailed(what, hint="see `estate deployment logs ID` for the full event log")


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
    refs = list(dict.fromkeys(_ref(e) for e in envs))
    ctx = get_context()
    kind = DeploymentKind.PLAN if plan_only else DeploymentKind.DEPLOY
    with _service(ctx, f"deploying {', '.join(envs)}") as service:
        service.toolchain()  # a missing binary is an error before anything is recorded
        ids = _create_all(service, refs, kind, ctx.actor(actor))
        results = _run_all(service, ids)
    _finish(results, output)


def rollback(
    env: Annotated[str, typer.Argument(metavar="PROJECT/ENV")],
    to: Annotated[int, typer.Option("--to", metavar="DEPLOYMENT_ID", help="The deployment to return to.")],
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Re-apply an earlier deployment's resolved graph (same module versions and inputs).

    Recorded as a new deployment of kind `rollback`. Example: estate rollback checkout/eph-1 --to 12
    """
    ref = _ref(env)
    ctx = get_context()
    with _service(ctx, f"rolling back {env} to deployment {to}") as service:
        service.toolchain()
        new_id = service.rollback_to(ref, to, triggered_by=ctx.actor(actor))
        results = [service.run(new_id)]
    _finish(results, output)


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
    refs = [_ref(env)] if env else [e.ref for e in ctx.store.load_estate().environments]
    with _service(ctx, f"checking drift of {len(refs)} environment(s)") as service:
        service.toolchain()
        ids = _create_all(service, refs, DeploymentKind.PLAN, f"drift:{ctx.actor(actor)}")
        results = _run_all(service, ids)
    data = [_drift_json(d) for d in results]

    def render() -> None:
        for d, row in zip(results, data, strict=True):
            if row["status"] != "succeeded":
                stdout.print(f"[red]{d.env}: check failed[/] — {escape(d.reason or '')}")
            elif row["drifted"]:
                stdout.print(f"[yellow]{d.env}: drifted[/] (deployment {d.id}: {d.plan_summary})")
                for c in (*row["out_of_band"], *row["changes"]):
                    stdout.print(f"    {_ACTION.get(c['action'], c['action'])} {escape(c['address'])}")
            else:
                stdout.print(f"[green]{d.env}: in sync[/]")

    emit(output, data, render)
    if any(d.status is not DeploymentStatus.SUCCEEDED for d in results):
        raise OperationFailed("some drift checks could not run", hint="see `estate deployment show ID`")
    if fail_on_drift and any(row["drifted"] for row in data):
        raise OperationFailed("drift detected")


def _drift_json(d: Deployment) -> dict[str, Any]:
    s = d.plan_summary
    changes = [{"address": c.address, "action": c.action} for c in (s.changes if s else ())]
    out_of_band = [{"address": c.address, "action": c.action} for c in (s.drift if s else ())]
    return {
        "env": str(d.env),
        "deployment": d.id,
        "status": str(d.status),
        "reason": d.reason,
        "drifted": bool(s and (s.has_changes or s.drift)),
        "changes": changes,
        "out_of_band": out_of_band,
    }


@deployment_app.command("list")
def deployment_list(
    env: Annotated[str | None, typer.Argument(metavar="[PROJECT/ENV]")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    output: OutputOpt = Format.TEXT,
) -> None:
    """List deployments, newest first. Example: estate deployment list checkout/eph-1"""
    ctx = get_context()
    found = DeploymentRepository(ctx.store).list(_ref(env) if env else None, limit=limit)

    def render() -> None:
        table = Table("id", "environment", "kind", "status", "versions", "by", "updated", box=None)
        for d in found:
            table.add_row(
                str(d.id),
                str(d.env),
                str(d.kind),
                f"[{_STATUS_STYLE[d.status]}]{d.status}[/]",
                ", ".join(d.graph.versions().values()),
                escape(d.triggered_by),
                f"{d.updated_at:%m-%d %H:%M:%S}",
            )
        stdout.print(table)

    emit(output, [_summary_json(d) for d in found], render)


@deployment_app.command("show")
def deployment_show(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], output: OutputOpt = Format.TEXT
) -> None:
    """Show a deployment: graph, status transitions, plan summary, outputs (sensitive ones masked)."""
    ctx = get_context()
    d = DeploymentRepository(ctx.store).get(deployment_id)

    def render() -> None:
        _render_outcome(d)
        stdout.print(
            f"  triggered by {escape(d.triggered_by)}"
            + (f" (rollout {d.rollout_id})" if d.rollout_id else "")
            + (f", {d.tool_version}" if d.tool_version else "")
        )
        for r in d.graph.resources:
            stdout.print(f"  resource [bold]{r.alias}[/]: {r.module}@{r.version} from {escape(r.source)}")
            for name, value in {**r.inputs, **r.references}.items():
                stdout.print(f"    {name} = {escape(json.dumps(value))}")
        if d.plan_summary is not None and d.plan_summary.destructive:
            stdout.print(
                "  [red]destructive:[/] "
                + ", ".join(f"{c.action} {escape(c.address)}" for c in d.plan_summary.destructive)
            )
        stdout.print("  " + " -> ".join(f"{t.status} {t.at:%H:%M:%S}" for t in d.transitions))

    emit(output, deployment_json(d), render)


@deployment_app.command("logs")
def deployment_logs(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the deployment ends.")] = False,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Print a deployment's event log; `--output json` prints the raw events, one JSON object per line."""
    ctx = get_context()
    repo = DeploymentRepository(ctx.store)
    last = -1
    while True:
        done = repo.get(deployment_id).status.is_terminal  # read before events: none can be missed
        for seq, event in repo.events(deployment_id, after=last):
            last = seq
            if output is Format.JSON:
                sys.stdout.write(json.dumps(event) + "\n")
            else:
                stdout.print(escape(describe(event)))
        sys.stdout.flush()
        if done or not follow:
            return
        time.sleep(0.5)


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.command()(rollback)
    app.command()(drift)
    app.add_typer(deployment_app, name="deployment")
