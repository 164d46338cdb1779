"""`estate rollout ...` and `estate engine run`: start, watch and steer rollouts wave by wave."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from estate.cli.context import get_context, utcnow
from estate.cli.output import ActorOpt, Format, OutputOpt, emit, stderr, stdout
from estate.cli.wiring import rollout_service
from estate.domain import rollout_events as ev
from estate.engine.preflight import Preview
from estate.engine.service import RolloutService
from estate.engine.status import Dashboards, rollout_view
from estate.errors import InputError
from estate.store import rollouts as repo
from estate.store.codec import encode

rollout_app = typer.Typer(
    help="Roll a module version out in waves: start, watch, promote, roll back.", no_args_is_help=True
)
engine_app = typer.Typer(help="Run the rollout engine in the foreground.", no_args_is_help=True)

PlanOpt = Annotated[str, typer.Option("--plan", help="The rollout plan (see `estate plan list`).")]
WaveOpt = Annotated[str | None, typer.Option("--wave", help="A wave's 1-based number or its name.")]
_COLORS = {
    "succeeded": "green",
    "failed": "red",
    "rolled_back": "yellow",
    "rolling_back": "yellow",
    "deploying": "cyan",
    "verifying": "cyan",
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
}


def _c(text: str | None) -> str:
    text = text or ""
    color = _COLORS.get(text)
    return f"[{color}]{escape(text)}[/]" if color else escape(text)


def _actor(given: str | None) -> str:
    return get_context().actor(given)


def _preview_json(preview: Preview) -> dict[str, Any]:
    return {**encode(preview), "destructive": preview.destructive, "errors": preview.errors}


def _render_preview(preview: Preview) -> None:
    stdout.print(f"[bold]{preview.module} -> {preview.version}[/] with plan [bold]{preview.plan}[/]")
    for wave in preview.waves:
        total = [sum(getattr(e, k) for e in wave.envs) for k in ("add", "change", "destroy")]
        counts = f"+{total[0]} ~{total[1]} -{total[2]}" if preview.planned else "not planned"
        stdout.print(f"  wave {wave.number} [bold]{wave.name}[/]: {len(wave.envs)} environment(s), {counts}")
        for e in wave.envs:
            line = f"    {e.env} ({e.current_version} -> {preview.version})"
            if preview.planned:
                line += f" +{e.add} ~{e.change} -{e.destroy}"
            stdout.print(escape(line) + (f" [red]{escape(e.error)}[/]" if e.error else ""))
            for d in e.destructive:
                stdout.print(f"      [red]destructive:[/] {escape(d)}")
    if preview.uncovered:
        stdout.print(f"  [yellow]not covered by any wave:[/] {escape(', '.join(preview.uncovered))}")


def _progress(label: str) -> Any:
    status = stderr.status(label)

    def update(done: int, total: int) -> None:
        status.update(f"{label} {done}/{total}")

    return status, update


@rollout_app.command("preview")
def preview_cmd(
    module: str,
    version: str,
    plan: PlanOpt,
    preflight: Annotated[bool, typer.Option(help="Plan every target for real.")] = True,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Show the blast radius per wave (real `plan` of every target) without starting anything."""
    service = rollout_service(get_context())
    status, update = _progress("preflight: planning")
    with status:
        result = service.preview(module, version, plan, actor=_actor(actor), preflight=preflight, progress=update)
    emit(output, _preview_json(result), lambda: _render_preview(result))


@rollout_app.command("start")
def start_cmd(
    module: str,
    version: str,
    plan: PlanOpt,
    allow_uncovered: Annotated[bool, typer.Option(help="Leave out targets no wave selects.")] = False,
    allow_destroy: Annotated[bool, typer.Option(help="Start even if preflight finds deletes/replaces.")] = False,
    preflight: Annotated[bool, typer.Option(help="Plan every target before wave 1 (default on).")] = True,
    detach: Annotated[bool, typer.Option(help="Record the rollout; let `estate engine run` drive it.")] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Start rolling MODULE VERSION out with a plan: preflight, then wave 1 until it needs a human.

    Example: estate rollout start postgres 2.0.0 --plan standard
    """
    ctx = get_context()
    service = rollout_service(ctx, quiet=output is Format.JSON)
    status, update = _progress("preflight: planning")
    with status:
        started = service.start(
            module,
            version,
            plan,
            actor=_actor(actor),
            allow_uncovered=allow_uncovered,
            allow_destroy=allow_destroy,
            preflight=preflight,
            progress=update,
        )
    for warning in started.warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")
    if output is Format.TEXT:
        _render_preview(started.preview)
        stdout.print(f"started rollout [bold]{started.rollout_id}[/]")
    if not detach:
        service.drive(started.rollout_id)
    _show(service, started.rollout_id, output)


def _show(service: RolloutService, rollout_id: str, output: Format) -> None:
    view = rollout_view(service.store, rollout_id, utcnow(), boards=_dashboards())
    emit(output, view, lambda: stdout.print(render_status(view, compact=True)))


def render_status(view: dict[str, Any], *, compact: bool = False) -> Group:
    """The status screen: header, one table per wave, what it waits for, recent events.

    `compact` (after a command) details only the current wave and skips the event history.
    """
    parts: list[Any] = [
        f"[bold]{escape(view['id'])}[/]: {escape(view['module'])} -> [bold]{escape(view['version'])}[/] "
        f"(plan {escape(view['plan'])}, started by {escape(view['started_by'])}) is {_c(view['phase'])}"
        + (f" — {escape(view['reason'])}" if view["reason"] else "")
    ]
    if view["waiting_for"]:
        parts.append(f"waiting for {escape(view['waiting_for'])} since {view['since']:%Y-%m-%d %H:%M:%S}")
    for wave in view["waves"]:
        marker = "▶ " if wave["number"] == view["current_wave"] else "  "
        if compact and wave["number"] != view["current_wave"]:
            parts.append(f"{marker}wave {wave['number']} [bold]{escape(wave['name'])}[/] {_c(wave['phase'])}")
            continue
        parts.append(
            f"\n{marker}wave {wave['number']} [bold]{escape(wave['name'])}[/] {_c(wave['phase'])}"
            + (f" ({escape(wave['reason'])})" if wave["reason"] else "")
            + f" [dim]max_parallel={wave['max_parallel']} tolerance={wave['failure_tolerance']}"
            f" on_failure={wave['on_failure']}[/]"
        )
        table = Table("environment", "status", "version", "previous", "deployment", "note", box=None, padding=(0, 2))
        for env in wave["envs"]:
            table.add_row(
                escape(env["env"]),
                _c(env["status"]),
                escape(env["version"]),
                escape(env["previous_version"]),
                escape(str(env["deployment_id"] or "")),
                escape(env["reason"] or ""),
            )
        parts.append(table)
        for gate in wave["gates"]:
            who = f" by {', '.join(gate['approved_by'])}" if gate.get("approved_by") else ""
            parts.append(
                f"    gate {gate['index']}: {escape(gate['spec'])} -> {_c(gate['result'] or 'pending')}"
                f"{escape(who)}" + _gate_reason(gate, links=not compact)
            )
    if view["not_covered"]:
        parts.append(f"\n[yellow]not covered by this rollout:[/] {escape(', '.join(view['not_covered']))}")
    if compact:
        return Group(*parts)
    parts.append("\n[bold]recent events[/]")
    parts.extend(f"  [dim]{e['at']:%H:%M:%S}[/] {escape(e['summary'])}" for e in view["events"][-10:])
    return Group(*parts)


def _gate_reason(gate: dict[str, Any], *, links: bool) -> str:
    """The evidence under a gate: each environment's verdict and observed values, or why it has none;
    with `links`, where to look at each query (Prometheus graph, Grafana Explore)."""
    details = gate.get("details") or {}
    subjects = details.get("subjects") or []
    if not subjects:
        reason = details.get("reason")
        return f"\n      {escape(str(reason))}" if reason else ""
    lines = []
    for s in subjects:
        lines.append(f"\n      {escape(s['subject'])}: {_c(s['verdict'])} {escape(s['reason'])}")
        if links:
            lines += [f"\n        {name}: {escape(url)}" for name, url in (s.get("links") or {}).items()]
    return "".join(lines)


def _dashboards() -> Dashboards:
    settings = get_context().store.settings()
    prometheus = dict(settings.get("prometheus") or {})
    grafana = dict(settings.get("grafana") or {})
    return Dashboards(get_context().settings.prometheus_url or prometheus.get("url"), grafana.get("url"))


@rollout_app.command("status")
def status_cmd(
    rollout: str,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until it ends.")] = False,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Waves, per-environment state and version, gate results, what it waits for and since when."""
    store = get_context().store
    view = rollout_view(store, rollout, utcnow(), boards=_dashboards())
    if not watch or output is Format.JSON:
        emit(output, view, lambda: stdout.print(render_status(view)))
        return
    with Live(render_status(view), console=stdout, refresh_per_second=2) as live:
        while view["phase"] not in ("completed", "aborted"):
            time.sleep(1)
            view = rollout_view(store, rollout, utcnow(), boards=_dashboards())
            live.update(render_status(view))


@rollout_app.command("list")
def list_cmd(
    module: Annotated[str | None, typer.Option(help="Only this module.")] = None, output: OutputOpt = Format.TEXT
) -> None:
    """Rollouts, oldest first."""
    store = get_context().store
    with store.engine.connect() as conn:
        records = repo.list_rollouts(conn, module)
    data: list[dict[str, Any]] = [
        {
            "id": r.id,
            "module": r.module,
            "version": r.target_version,
            "plan": r.plan_id,
            "phase": r.phase,
            "created_by": r.created_by,
            "created_at": r.created_at,
        }
        for r in records
    ]

    def render() -> None:
        table = Table("rollout", "module", "version", "plan", "phase", "by", "created", box=None)
        for r in data:
            table.add_row(
                r["id"],
                r["module"],
                r["version"],
                r["plan"],
                _c(r["phase"]),
                r["created_by"],
                f"{r['created_at']:%Y-%m-%d %H:%M}",
            )
        stdout.print(table)

    emit(output, data, render)


def _wave_number(service: RolloutService, rollout_id: str, wave: str | None) -> int | None:
    if wave is None:
        return None
    names = [w.name for w in service.state(rollout_id).plan.waves]
    if wave.isdigit() and 1 <= int(wave) <= len(names):
        return int(wave)
    if wave in names:
        return names.index(wave) + 1
    raise InputError(f"no wave '{wave}': the plan's waves are " + ", ".join(f"{i} {n}" for i, n in enumerate(names, 1)))


def _steer(rollout_id: str, make: Any, output: Format) -> None:
    """Queue a command, let the engine act on it here (or in `engine run`), then show the rollout."""
    service = rollout_service(get_context(), quiet=output is Format.JSON)
    command = make(service)
    service.command(rollout_id, command)
    _show(service, rollout_id, output)


@rollout_app.command("promote")
def promote_cmd(rollout: str, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """Accept the current wave (its gates passed) and start the next one. Refused otherwise (exit 1)."""
    _steer(rollout, lambda s: ev.Promote(_actor(actor)), output)


@rollout_app.command("approve")
def approve_cmd(
    rollout: str,
    override: Annotated[
        bool, typer.Option(help="Accept a halted wave (failed or inconclusive gate) as it is.")
    ] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Approve the current wave's approval gate (four-eyes: not the one who started it)."""
    who = _actor(actor)

    def make(service: RolloutService) -> ev.Approve:
        roles = service.roles_of(service.store.load_estate(), service.state(rollout), who)
        return ev.Approve(who, override, roles)

    _steer(rollout, make, output)


@rollout_app.command("pause")
def pause_cmd(rollout: str, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """Start nothing new; in-flight deployments finish."""
    _steer(rollout, lambda s: ev.Pause(_actor(actor)), output)


@rollout_app.command("resume")
def resume_cmd(rollout: str, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """Carry on after `pause`."""
    _steer(rollout, lambda s: ev.Resume(_actor(actor)), output)


@rollout_app.command("abort")
def abort_cmd(rollout: str, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """End the rollout: nothing new starts; environments stay on the version they are on."""
    _steer(rollout, lambda s: ev.Abort(_actor(actor)), output)


@rollout_app.command("rollback")
def rollback_cmd(rollout: str, wave: WaveOpt = None, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """Roll a wave (default: the current one) back: each environment to its own previous version."""
    _steer(rollout, lambda s: ev.Rollback(_actor(actor), _wave_number(s, rollout, wave)), output)


@rollout_app.command("rerun")
def rerun_cmd(
    rollout: str,
    wave: WaveOpt = None,
    only_failed: Annotated[bool, typer.Option(help="Keep environments that succeeded.")] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Run a wave again (e.g. after a rollback and a retarget); it becomes the current wave."""
    _steer(rollout, lambda s: ev.Rerun(_actor(actor), _wave_number(s, rollout, wave), only_failed), output)


@rollout_app.command("retarget")
def retarget_cmd(
    rollout: str,
    version: str,
    allow_destroy: Annotated[bool, typer.Option(help="Accept destructive preflight changes.")] = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Make later work use VERSION (a patched release); the preflight runs again for it."""
    ctx = get_context()
    service = rollout_service(ctx, quiet=output is Format.JSON)
    status, update = _progress(f"preflight of {version}: planning")
    with status:
        _preview, warnings = service.retarget(
            rollout, version, actor=_actor(actor), allow_destroy=allow_destroy, progress=update
        )
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")
    _show(service, rollout, output)


@engine_app.command("run")
def engine_run(
    rollouts: Annotated[list[str] | None, typer.Argument(help="Rollouts to drive (default: all active ones).")] = None,
    once: Annotated[bool, typer.Option(help="Stop when every rollout waits for a human.")] = False,
) -> None:
    """Drive rollouts in the foreground, picking up commands from other terminals, until they end."""
    service = rollout_service(get_context())
    with service.store.engine.connect() as conn:
        ids = rollouts or [r.id for r in repo.list_rollouts(conn) if r.phase not in ("completed", "aborted")]
    if not ids:
        stderr.print("no active rollout to drive")
        return
    if len(ids) > 1 and not once:
        raise InputError("drive one rollout per `engine run` (or use --once to step through several)")
    for rollout_id in ids:
        state = service.drive(rollout_id, follow=not once)
        stderr.print(f"{rollout_id}: " + (str(state.phase) if state else "driven by another engine"))


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(engine_app, name="engine")
