"""`estate rollout ...` and `estate engine run`: start, watch and steer rollouts wave by wave."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from estate.app.views.rollouts import EnvQuery, GateView, PreviewView, RolloutView
from estate.cli.context import Context, get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, colored, emit, live_progress, stderr, stdout

rollout_app = typer.Typer(
    help="Roll a module version out in waves: start, watch, promote, roll back.", no_args_is_help=True
)
engine_app = typer.Typer(help="Run the rollout engine in the foreground.", no_args_is_help=True)

PlanOpt = Annotated[str, typer.Option("--plan", help="The rollout plan (see `estate plan list`).")]
WaveOpt = Annotated[str | None, typer.Option("--wave", help="A wave's 1-based number or its name.")]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Return once the engine has answered; `estate engine run` drives the rest.")
]


def _render_preview(preview: PreviewView) -> None:
    """One table: every target, its wave, the version change and what the plan would do."""
    stdout.print(f"[bold]{preview.module} -> {preview.version}[/] with plan [bold]{preview.plan}[/]")
    table = Table(box=None, padding=(0, 2))
    for name in ("wave", "environment", "version", "plan"):
        table.add_column(name, no_wrap=True)
    table.add_column("notes", overflow="fold")
    for wave in preview.waves:
        for e in wave.envs:
            plan = f"+{e.add} ~{e.change} -{e.destroy}" if preview.planned else "not planned"
            notes = [f"[red]{escape(e.error)}[/]"] if e.error else [f"[red]{escape(d)}[/]" for d in e.destructive]
            version = f"{e.current_version} -> {preview.version}"
            table.add_row(f"{wave.number} {escape(wave.name)}", escape(e.env), escape(version), plan, "\n".join(notes))
        if not wave.envs:
            table.add_row(f"{wave.number} {escape(wave.name)}", "[dim](no environments)[/]", "", "", "")
    stdout.print(table)
    totals = [sum(getattr(e, k) for w in preview.waves for e in w.envs) for k in ("add", "change", "destroy")]
    count = sum(len(w.envs) for w in preview.waves)
    summary = f"+{totals[0]} ~{totals[1]} -{totals[2]}" if preview.planned else "not planned"
    stdout.print(f"{count} environment(s) in {len(preview.waves)} wave(s): {summary}")
    if preview.uncovered:
        stdout.print(f"[yellow]not covered by any wave:[/] {escape(', '.join(preview.uncovered))}")


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
    ctx = get_context()
    with live_progress() as progress:
        view = ctx.app.rollouts.preview(
            ctx.caller(actor), module, version, plan, preflight=preflight, progress=progress
        )
    emit(output, view, lambda: _render_preview(view))


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
    ctx.quiet = output is Format.JSON
    with live_progress() as progress:
        started = ctx.app.rollouts.start(
            ctx.caller(actor),
            module,
            version,
            plan,
            allow_uncovered=allow_uncovered,
            allow_destroy=allow_destroy,
            preflight=preflight,
            progress=progress,
            follow=False,
        )
    _warn(started.warnings)
    if output is Format.TEXT:
        _render_preview(started.preview)
        stdout.print(f"started rollout [bold]{started.id}[/]")
    if not detach:
        ctx.app.rollouts.drive(started.id)
    _show(ctx.app.rollouts.status(started.id), output)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")


def _show(view: RolloutView, output: Format) -> None:
    emit(output, view, lambda: stdout.print(render_status(view, compact=True)))


def render_status(view: RolloutView, *, compact: bool = False) -> Group:
    """The status screen: header, one table per wave, what it waits for, recent events.

    `compact` (after a command) details only the current wave and skips the event history.
    """
    parts: list[RenderableType] = [
        f"[bold]{escape(view.id)}[/]: {escape(view.module)} -> [bold]{escape(view.version)}[/] "
        f"(plan {escape(view.plan)}, started by {escape(view.started_by)}) is {colored(view.phase)}"
        + (f" — {escape(view.reason)}" if view.reason else "")
    ]
    for f in view.freezes:
        parts.append(f"[bold yellow]frozen:[/] {escape(f.text)}")
    if view.waiting_for:
        parts.append(f"waiting for {escape(view.waiting_for)} since {view.since:%Y-%m-%d %H:%M:%S}")
    for wave in view.waves:
        marker = "▶ " if wave.number == view.current_wave else "  "
        if compact and wave.number != view.current_wave:
            parts.append(f"{marker}wave {wave.number} [bold]{escape(wave.name)}[/] {colored(wave.phase)}")
            continue
        counts = ", ".join(f"{n} {colored(s)}" for s, n in sorted(wave.counts.items()))
        parts.append(
            f"\n{marker}wave {wave.number} [bold]{escape(wave.name)}[/] {colored(wave.phase)}"
            + (f" ({escape(wave.reason)})" if wave.reason else "")
            + f" [dim]max_parallel={wave.max_parallel} tolerance={wave.failure_tolerance}"
            f" on_failure={wave.on_failure}[/]" + (f"\n    {counts}" if counts else "")
        )
        if wave.change_windows:
            parts.append(f"    [dim]change windows: {escape(', '.join(wave.change_windows))}[/]")
        if wave.hold:
            parts.append(f"    [yellow]held:[/] {escape(wave.hold)}")
        table = Table("environment", "status", "version", "previous", "deployment", "note", box=None, padding=(0, 2))
        for env in wave.envs:
            table.add_row(
                escape(env.env),
                colored(env.status),
                escape(env.version),
                escape(env.previous_version),
                escape(env.deployment_id or ""),
                f"[yellow]waiting for a runner of pool {escape(env.waiting_for_runner)}[/]"
                if env.waiting_for_runner
                else escape(env.reason),
            )
        parts.append(table)
        for gate in wave.gates:
            who = f" by {', '.join(gate.approved_by)}" if gate.approved_by else ""
            parts.append(
                f"    gate {gate.index}: {escape(gate.spec)} -> {colored(gate.result or 'pending')}"
                f"{escape(who)}" + _evidence(gate, links=not compact)
            )
        for alert in wave.alerts:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")
            since = f" since {alert.starts_at:%H:%M:%S}" if alert.starts_at else ""
            parts.append(
                f"    alert {escape(alert.name)} firing for {escape(alert.env)}{since} -> {colored(alert.effect)}"
                f"\n      [dim]{escape(labels)}[/]" + (f"\n      {escape(alert.generator_url)}" if not compact else "")
            )
    if view.next_cursor:
        parts.append(f"[dim]more environments: --after {escape(view.next_cursor)}[/]")
    if view.not_covered:
        parts.append(f"\n[yellow]not covered by this rollout:[/] {escape(', '.join(view.not_covered))}")
    if compact:
        return Group(*parts)
    parts.append("\n[bold]recent events[/]")
    parts.extend(f"  [dim]{e.at:%H:%M:%S}[/] {escape(e.summary)}" for e in view.events[-10:])
    return Group(*parts)


def _evidence(gate: GateView, *, links: bool) -> str:
    """The evidence under a gate: each environment's verdict and observed values, or why it has none;
    with `links`, where to look at each query (Prometheus graph, Grafana Explore)."""
    details = gate.details
    if details is None:
        return ""
    if not details.subjects:
        return f"\n      {escape(details.reason)}" if details.reason else ""
    lines = [f"\n      {escape(details.reason)}"] if details.comparison is not None else []
    for s in details.subjects:
        lines.append(f"\n      {escape(s.subject)}: {colored(s.verdict)} {escape(s.reason)}")
        if links:
            lines += [f"\n        {name}: {escape(url)}" for name, url in s.links.items()]
    return "".join(lines)


@rollout_app.command("status")
def status_cmd(
    rollout: str,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until it ends.")] = False,
    wave: Annotated[str | None, typer.Option(help="Only environments of this wave (number or name).")] = None,
    state: Annotated[str | None, typer.Option(help="Only environments in this state (e.g. failed).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many environments.")] = None,
    after: Annotated[str | None, typer.Option(metavar="PROJECT/ENV", help="Start after this one (paging).")] = None,
    summary: Annotated[bool, typer.Option(help="Counts per wave and state only.")] = False,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Waves, per-environment state and version, gate results, what it waits for and since when.

    On a large rollout, page through it: estate rollout status R --state failed --limit 50
    """
    app = get_context().app
    rollouts = app.rollouts
    query = EnvQuery(wave=wave, state=state, limit=limit, after=after, summary=summary)
    view = rollouts.status(rollout, query=query)
    if not watch or output is Format.JSON:
        emit(output, view, lambda: stdout.print(render_status(view)))
        return
    with Live(render_status(view), console=stdout, refresh_per_second=2) as live:
        # Refresh on each change: embedded, the store's event feed is polled; remote, the server's event stream
        for _events in app.feed.follow(rollout=rollout):
            if view.phase in ("completed", "aborted"):
                break
            view = rollouts.status(rollout, query=query)
            live.update(render_status(view))


@rollout_app.command("list")
def list_cmd(
    module: Annotated[str | None, typer.Option(help="Only this module.")] = None,
    phase: Annotated[str | None, typer.Option(help="Only rollouts in this phase (e.g. halted).")] = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Rollouts, oldest first."""
    found = get_context().app.rollouts.list(module=module, phase=phase)

    def render() -> None:
        table = Table("rollout", "module", "version", "plan", "phase", "by", "created", box=None)
        for r in found:
            table.add_row(
                r.id,
                r.module,
                r.version,
                r.plan,
                colored(r.phase),
                escape(r.created_by),
                f"{r.created_at:%Y-%m-%d %H:%M}",
            )
        stdout.print(table)

    emit(output, found, render)


def _steer(output: Format, act: Callable[[Context], RolloutView]) -> None:
    """Send a command through the application layer (embedded: the engine runs here), then show the rollout."""
    ctx = get_context()
    ctx.quiet = output is Format.JSON
    _show(act(ctx), output)


@rollout_app.command("promote")
def promote_cmd(
    rollout: str, detach: DetachOpt = False, actor: ActorOpt = None, output: OutputOpt = Format.TEXT
) -> None:
    """Accept the current wave (its gates passed) and start the next one. Refused otherwise (exit 1)."""
    _steer(output, lambda ctx: ctx.app.rollouts.promote(ctx.caller(actor), rollout, follow=not detach))


@rollout_app.command("approve")
def approve_cmd(
    rollout: str,
    override: Annotated[
        bool, typer.Option(help="Accept a halted wave (failed, errored or inconclusive) as it is.")
    ] = False,
    detach: DetachOpt = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Approve the current wave's approval gate (four-eyes: not the one who started it)."""
    _steer(
        output, lambda ctx: ctx.app.rollouts.approve(ctx.caller(actor), rollout, override=override, follow=not detach)
    )


@rollout_app.command("pause")
def pause_cmd(rollout: str, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """Start nothing new; in-flight deployments finish."""
    _steer(output, lambda ctx: ctx.app.rollouts.pause(ctx.caller(actor), rollout, follow=False))


@rollout_app.command("resume")
def resume_cmd(
    rollout: str, detach: DetachOpt = False, actor: ActorOpt = None, output: OutputOpt = Format.TEXT
) -> None:
    """Carry on after `pause`."""
    _steer(output, lambda ctx: ctx.app.rollouts.resume(ctx.caller(actor), rollout, follow=not detach))


@rollout_app.command("abort")
def abort_cmd(rollout: str, actor: ActorOpt = None, output: OutputOpt = Format.TEXT) -> None:
    """End the rollout: nothing new starts; environments stay on the version they are on."""
    _steer(output, lambda ctx: ctx.app.rollouts.abort(ctx.caller(actor), rollout))


@rollout_app.command("rollback")
def rollback_cmd(
    rollout: str,
    wave: WaveOpt = None,
    detach: DetachOpt = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Roll a wave (default: the current one) back: each environment to its own previous version."""
    _steer(output, lambda ctx: ctx.app.rollouts.rollback(ctx.caller(actor), rollout, wave=wave, follow=not detach))


@rollout_app.command("rerun")
def rerun_cmd(
    rollout: str,
    wave: WaveOpt = None,
    only_failed: Annotated[bool, typer.Option(help="Keep environments that succeeded.")] = False,
    detach: DetachOpt = False,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Run a wave again (e.g. after a rollback and a retarget); it becomes the current wave."""
    _steer(
        output,
        lambda ctx: ctx.app.rollouts.rerun(
            ctx.caller(actor), rollout, wave=wave, only_failed=only_failed, follow=not detach
        ),
    )


@rollout_app.command("retarget")
def retarget_cmd(
    rollout: str,
    version: str,
    allow_destroy: Annotated[bool, typer.Option(help="Accept destructive preflight changes.")] = False,
    preflight: Annotated[bool, typer.Option(help="Plan every target on VERSION first (default on).")] = True,
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Make later work use VERSION (a patched release); the preflight runs again for it."""
    ctx = get_context()
    ctx.quiet = output is Format.JSON
    with live_progress() as progress:
        view, warnings = ctx.app.rollouts.retarget(
            ctx.caller(actor),
            rollout,
            version,
            allow_destroy=allow_destroy,
            preflight=preflight,
            progress=progress,
            follow=False,
        )
    _warn(warnings)
    _show(view, output)


@engine_app.command("run")
def engine_run(
    rollouts: Annotated[list[str] | None, typer.Argument(help="Rollouts to drive (default: all active ones).")] = None,
    once: Annotated[bool, typer.Option(help="Stop when every rollout waits for a human.")] = False,
) -> None:
    """Drive rollouts in the foreground, all of them at once, picking up commands and new rollouts from
    other terminals, until stopped (or, with --once, until each waits for a human)."""
    ended = get_context().app.rollouts.run_engine(rollouts, once=once)
    if not ended:
        stderr.print("no active rollout to drive")
    for rollout_id, where in ended.items():
        stderr.print(f"{rollout_id}: {where}")


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(engine_app, name="engine")
