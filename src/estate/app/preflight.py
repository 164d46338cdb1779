"""Before a rollout: its targets, frozen wave membership, and the preflight plan of every target.

Targets are computed by the same function as `estate module usage`, so impact analysis and the rollout
agree. Preflight runs a real `plan` of the target version for each target (bounded parallelism) and
reports, per wave, what would be added, changed and destroyed; `check` refuses what must not start.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from typing import Any

from estate.app.progress import Progress
from estate.app.views.rollouts import EnvPreviewView, PreviewView, WavePreviewView
from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus
from estate.domain.graph import resolve_graph
from estate.domain.ids import EnvRef
from estate.domain.lifecycle import check_deployable
from estate.domain.model import Environment, Estate
from estate.domain.plans import Destructive, RolloutPlan
from estate.domain.usage import module_usage
from estate.domain.waves import WaveMembership, assign_waves
from estate.errors import ConflictError, InputError, NotFoundError, OperationFailed
from estate.runners import DeploymentService, LocalPool


@dataclass(frozen=True)
class Targets:
    """Who a rollout touches, in which wave, and the version each is on now."""

    membership: WaveMembership
    current: dict[EnvRef, str] = field(default_factory=dict)
    types: dict[EnvRef, str] = field(default_factory=dict)  # each target's env type
    warnings: tuple[str, ...] = ()  # e.g. the version is deprecated

    @property
    def refs(self) -> list[EnvRef]:
        return [ref for wave in self.membership.waves for ref in wave]


def targets(estate: Estate, module_id: str, version: str, plan: RolloutPlan, *, allow_uncovered: bool) -> Targets:
    """Refuses unknown and defective versions, empty plans and (unless allowed) targets no wave selects."""
    module = estate.require_module(module_id)
    published = module.version(version)
    if published is None:
        known = ", ".join(v.version for v in module.versions)
        raise NotFoundError(
            f"module '{module_id}' has no published version '{version}' (published: {known})",
            hint=f"publish it first: estate module publish {module_id} {version} --source ...",
        )
    warning = check_deployable(published)
    usage = module_usage(estate, module_id)
    envs: dict[EnvRef, Environment] = {b.env.ref: b.env for b in usage}
    if not envs:
        raise InputError(f"no environment uses module '{module_id}'; there is nothing to roll out")
    membership = assign_waves(plan, envs.values())
    if not any(membership.waves):
        raise InputError(f"plan '{plan.id}' selects none of the {len(envs)} environments using '{module_id}'")
    if membership.uncovered and not allow_uncovered:
        names = ", ".join(str(r) for r in membership.uncovered)
        raise InputError(
            f"no wave of the plan selects these environments that use the module: {names}",
            hint="add a wave that selects them, or pass --allow-uncovered to leave them out",
        )
    return Targets(
        membership,
        {b.env.ref: b.version or "" for b in usage},
        {b.env.ref: b.env.type for b in usage},
        (warning,) if warning else (),
    )


def preflight(
    estate: Estate,
    runner: DeploymentService,
    module_id: str,
    version: str,
    plan: RolloutPlan,
    found: Targets,
    *,
    actor: str,
    progress: Progress,
) -> PreviewView:
    """Plan every target on `version` (real plans, `runner.max_parallel` at a time) and summarize per wave."""
    refs = found.refs
    graphs = [resolve_graph(estate, ref, {module_id: version}) for ref in refs]
    ids = runner.create_all(graphs, DeploymentKind.PLAN, triggered_by=f"preflight by {actor}")
    progress.begin(f"preflight: planning {module_id} {version}", len(ids))
    results: dict[EnvRef, Deployment] = {}
    with LocalPool(runner, runner.config.max_parallel) as pool:
        for future in as_completed([pool.submit(i) for i in ids]):
            dep = future.result()
            results[dep.env] = dep
            progress.advance(str(dep.env), str(dep.status))
    waves = [
        WavePreviewView(
            number=n,
            name=plan.waves[n - 1].name,
            envs=[_env_preview(r, found.current.get(r, ""), results[r]) for r in refs_of_wave],
        )
        for n, refs_of_wave in enumerate(found.membership.waves, start=1)
    ]
    return _preview(module_id, version, plan, found, waves, planned=True)


def membership_only(module_id: str, version: str, plan: RolloutPlan, found: Targets) -> PreviewView:
    """The membership without plans (`--no-preflight`)."""
    waves = [
        WavePreviewView(
            number=n,
            name=plan.waves[n - 1].name,
            envs=[EnvPreviewView(env=str(r), current_version=found.current.get(r, "")) for r in refs],
        )
        for n, refs in enumerate(found.membership.waves, start=1)
    ]
    return _preview(module_id, version, plan, found, waves, planned=False)


def _preview(
    module_id: str, version: str, plan: RolloutPlan, found: Targets, waves: list[WavePreviewView], *, planned: bool
) -> PreviewView:
    envs = [e for w in waves for e in w.envs]
    return PreviewView(
        module=module_id,
        version=version,
        plan=plan.id,
        waves=waves,
        uncovered=[str(r) for r in found.membership.uncovered],
        planned=planned,
        destructive=[f"{e.env}: {d}" for e in envs for d in e.destructive],
        errors=[f"{e.env}: {e.error}" for e in envs if e.error],
    )


def _env_preview(ref: EnvRef, current: str, dep: Deployment) -> EnvPreviewView:
    if dep.status is not DeploymentStatus.SUCCEEDED or dep.plan_summary is None:
        return EnvPreviewView(
            env=str(ref), current_version=current, error=dep.reason or f"plan {dep.status}", deployment_id=dep.id
        )
    summary = dep.plan_summary
    return EnvPreviewView(
        env=str(ref),
        current_version=current,
        add=summary.add,
        change=summary.change,
        destroy=summary.remove,
        destructive=[f"{c.action} {c.address}" for c in summary.destructive],
        deployment_id=dep.id,
    )


LISTED = 20  # entries of each list a stored preflight summary keeps


def summary(preview: PreviewView) -> dict[str, Any]:
    """What the rollout row keeps of a preview: per wave, how many environments and the totals of their plans;
    the first entries of each list and their counts. Each environment's plan is its own deployment, linked
    from the rollout's environment (`plans`)."""
    waves = [
        {
            "number": w.number,
            "name": w.name,
            "environments": len(w.envs),
            **{k: sum(getattr(e, k) for e in w.envs) for k in ("add", "change", "destroy")},
        }
        for w in preview.waves
    ]
    lists = {k: getattr(preview, k) for k in ("uncovered", "destructive", "errors")}
    return {
        "module": preview.module,
        "version": preview.version,
        "plan": preview.plan,
        "planned": preview.planned,
        "waves": waves,
        **{k: v[:LISTED] for k, v in lists.items()},
        **{f"{k}_count": len(v) for k, v in lists.items()},
    }


def plans(preview: PreviewView) -> dict[EnvRef, int]:
    """`env -> the plan deployment whose saved plan a deploy of the preview's version may apply`."""
    return {
        EnvRef.parse(e.env): e.deployment_id
        for w in preview.waves
        for e in w.envs
        if e.deployment_id is not None and e.error is None
    }


def check(preview: PreviewView, plan: RolloutPlan, *, allow_destroy: bool) -> list[str]:
    """Refuse on failed plans, and on destructive changes unless allowed; returns warnings to show."""
    failed: dict[str, list[str]] = {}
    for env in (e for w in preview.waves for e in w.envs):
        if env.error:
            failed.setdefault(env.error, []).append(env.env)
    if failed:
        lines = [
            f"{len(envs)} environment(s) ({', '.join(envs[:3])}{', ...' if len(envs) > 3 else ''}): {error}"
            for error, envs in failed.items()
        ]
        raise OperationFailed(
            "preflight could not plan the target version:\n  " + "\n  ".join(lines),
            hint="fix the module version (publish a new one) or the environments",
        )
    if preview.destructive and not allow_destroy:
        if plan.destructive is Destructive.BLOCK:
            envs = {e.env for w in preview.waves for e in w.envs if e.destructive}
            raise ConflictError(
                f"preflight found {len(preview.destructive)} destructive change(s) "
                f"in {len(envs)} environment(s): {_destructive_summary(preview)}",
                hint="review them with `estate rollout preview`, then pass --allow-destroy if they are intended",
            )
        return [f"destructive (plan says warn): {d}" for d in preview.destructive]
    return []


def _destructive_summary(preview: PreviewView) -> str:
    """`replace module.db.null_resource.status (x16)`: the same change in many envs is shown once."""
    counts = Counter(d for w in preview.waves for e in w.envs for d in e.destructive)
    return "; ".join(f"{what} (x{n})" if n > 1 else what for what, n in counts.items())
