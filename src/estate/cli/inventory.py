"""Read the estate: `env list`, `module list|usage|publish`, `plan list|show`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from estate.cli.context import get_context, utcnow
from estate.cli.output import ActorOpt, Format, OutputOpt, emit, stdout
from estate.domain.model import Environment, Estate, ModuleVersion
from estate.domain.plans import RolloutPlan
from estate.domain.selectors import Selector
from estate.domain.usage import module_usage
from estate.domain.versions import Version
from estate.errors import InputError, NotFoundError
from estate.store.codec import encode

env_app = typer.Typer(help="Environments of the estate.", no_args_is_help=True)
module_app = typer.Typer(help="Modules, their versions, and impact analysis.", no_args_is_help=True)
plan_app = typer.Typer(help="Rollout plans (waves, gates, policies).", no_args_is_help=True)


def _env_json(env: Environment) -> dict[str, Any]:
    return {"ref": str(env.ref), "project": env.project, "id": env.id, "type": env.type, "labels": dict(env.labels)}


def _parse_labels(labels: list[str]) -> dict[str, str]:
    out = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label '{item}' is not of the form key=value")
        out[key] = value
    return out


@env_app.command("list")
def env_list(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this env type.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value; repeat to AND several.")] = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """List environments, ordered by env type rank. Example: estate env list --type production --label region=eu"""
    estate = get_context().store.load_estate()
    selector = Selector(
        env_types=frozenset([type_]) if type_ else None,
        labels=_parse_labels(label or []),
        projects=frozenset([project]) if project else None,
    )
    rank = estate.env_type_rank()
    envs = sorted(selector.select(estate.environments), key=lambda e: (rank.get(e.type, 0), e.project, e.id))
    owners = {p.id: p.owner for p in estate.projects}

    def render() -> None:
        table = Table("environment", "type", "owner", "labels", box=None)
        for e in envs:
            table.add_row(
                str(e.ref),
                e.type,
                owners.get(e.project, ""),
                ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items())),
            )
        stdout.print(table)
        stdout.print(f"[dim]{len(envs)} environment(s)[/]")

    emit(output, [_env_json(e) for e in envs], render)


@module_app.command("list")
def module_list(output: OutputOpt = Format.TEXT) -> None:
    """List modules with their published versions (newest last)."""
    estate = get_context().store.load_estate()
    data = [
        {
            "id": m.id,
            "resource_type": m.resource_type,
            "versions": [{"version": v.version, "source": v.source} for v in _sorted_versions(m.versions)],
        }
        for m in estate.modules
    ]

    def render() -> None:
        table = Table("module", "resource type", "versions", box=None)
        for m in estate.modules:
            table.add_row(m.id, m.resource_type, ", ".join(v.version for v in _sorted_versions(m.versions)))
        stdout.print(table)

    emit(output, data, render)


def _sorted_versions(versions: tuple[ModuleVersion, ...]) -> list[ModuleVersion]:
    return sorted(versions, key=lambda v: Version.parse(v.version))


def usage_json(estate: Estate, module_id: str) -> dict[str, Any]:
    """Who uses which version of `module_id`, with totals per version, env type and owner."""
    module = estate.module(module_id)
    if module is None:
        raise NotFoundError(f"unknown module '{module_id}'", hint="see `estate module list`")
    owners = {p.id: p.owner for p in estate.projects}
    found = module_usage(estate, module_id)
    by: dict[str, dict[str, int]] = {
        "version": defaultdict(int),
        "env_type": defaultdict(int),
        "owner": defaultdict(int),
    }
    for b in found:
        by["version"][b.version or ""] += 1
        by["env_type"][b.env.type] += 1
        by["owner"][owners.get(b.env.project, "")] += 1
    using = {b.env.ref for b in found}
    needing = {p.id for p in estate.projects if any(r.type == module.resource_type for r in p.resources)}
    unresolved = [str(e.ref) for e in estate.environments if e.project in needing and e.ref not in using]
    return {
        "module": module_id,
        "environments": [
            {
                "env": str(b.env.ref),
                "env_type": b.env.type,
                "owner": owners.get(b.env.project, ""),
                "resource": b.alias,
                "version": b.version,
                "rule_scope": b.scope.name.lower() if b.scope is not None else None,
            }
            for b in found
        ],
        "totals": {k: dict(v) for k, v in by.items()},
        "unresolved": unresolved,
    }


@module_app.command("usage")
def module_usage_cmd(module: str, output: OutputOpt = Format.TEXT) -> None:
    """Impact analysis: which environments use MODULE, at which version, by env type and owner.

    Answers "which environments would an update touch?" before you start a rollout.
    """
    data = usage_json(get_context().store.load_estate(), module)

    def render() -> None:
        table = Table("env type", "environment", "owner", "resource", "version", "decided by", box=None)
        for row in data["environments"]:
            table.add_row(row["env_type"], row["env"], row["owner"], row["resource"], row["version"], row["rule_scope"])
        stdout.print(table)
        for title, key in (("by version", "version"), ("by env type", "env_type"), ("by owner", "owner")):
            stdout.print(f"[bold]{title}:[/] " + ", ".join(f"{k} {v}" for k, v in data["totals"][key].items()))
        if data["unresolved"]:
            stdout.print(f"[yellow]no rule picks a {module} version for:[/] {', '.join(data['unresolved'])}")

    emit(output, data, render)


def _local_source(source: str) -> str:
    """Make a local path absolute (Terraform needs ./ or / for paths); refuse one that does not exist."""
    if "::" in source or "://" in source:
        return source
    path = Path(source)
    if path.is_dir():
        return str(path.resolve())
    if source.startswith(("./", "../", "/")):
        raise InputError(f"--source {source}: no such directory")
    return source  # a registry address such as namespace/name/provider


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
    estate = ctx.store.load_estate()
    found = estate.module(module)
    if found is None:
        raise NotFoundError(f"unknown module '{module}'", hint="see `estate module list`")
    newest = _sorted_versions(found.versions)[-1:]
    base = found.version(inputs_from) if inputs_from else (newest[0] if newest else None)
    if inputs_from and base is None:
        raise NotFoundError(f"module '{module}' has no version '{inputs_from}'")
    source = _local_source(source)
    mv = ModuleVersion(module, version, source, base.inputs if base else {})
    created = ctx.store.publish(mv, ctx.actor(actor), utcnow())
    data = {"module": module, "version": version, "source": source, "created": created}
    emit(
        output,
        data,
        lambda: stdout.print(
            f"published {module} {version}" if created else f"{module} {version} already published (unchanged)"
        ),
    )


@plan_app.command("list")
def plan_list(output: OutputOpt = Format.TEXT) -> None:
    """List rollout plans and their waves."""
    plans = get_context().store.load_estate().plans
    data = [{"id": p.id, "description": p.description, "waves": [w.name for w in p.waves]} for p in plans]

    def render() -> None:
        table = Table("plan", "waves", "description", box=None)
        for p in plans:
            table.add_row(p.id, " -> ".join(w.name for w in p.waves), p.description)
        stdout.print(table)

    emit(output, data, render)


def _plan(estate: Estate, plan_id: str) -> RolloutPlan:
    plan = estate.plan(plan_id)
    if plan is None:
        raise NotFoundError(f"unknown rollout plan '{plan_id}'", hint="see `estate plan list`")
    return plan


@plan_app.command("show")
def plan_show(plan_id: Annotated[str, typer.Argument(metavar="PLAN")], output: OutputOpt = Format.TEXT) -> None:
    """Show a plan's waves and which environments each would take now (first matching wave wins)."""
    estate = get_context().store.load_estate()
    plan = _plan(estate, plan_id)
    taken: set[str] = set()
    waves = []
    for w in plan.waves:
        members = [str(e.ref) for e in w.select.select(estate.environments) if str(e.ref) not in taken]
        taken.update(members)
        waves.append({"name": w.name, "spec": encode(w), "environments": members})
    data = {"id": plan.id, "description": plan.description, "destructive": str(plan.destructive), "waves": waves}

    def render() -> None:
        stdout.print(f"[bold]{plan.id}[/] {plan.description}")
        for i, (w, wj) in enumerate(zip(plan.waves, waves, strict=True), 1):
            gates = ", ".join(type(g).__name__.removesuffix("Gate").lower() for g in w.gates) or "none"
            stdout.print(
                f"  {i}. [bold]{w.name}[/] max_parallel={w.max_parallel} "
                f"tolerance={w.failure_tolerance} on_failure={w.on_failure} gates={gates}"
            )
            stdout.print(f"     {', '.join(wj['environments']) or '[dim](no environments)[/]'}")

    emit(output, data, render)


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")
    app.add_typer(module_app, name="module")
    app.add_typer(plan_app, name="plan")
