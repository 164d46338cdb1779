"""Starting a rollout: its targets, frozen wave membership, and the preflight plan of every target.

Targets are computed by the same function as `estate module usage`, so impact analysis and the rollout
agree. Preflight runs a real `plan` of the target version for each target (bounded parallelism) and
reports, per wave, what would be added, changed and destroyed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus
from estate.domain.graph import resolve_graph
from estate.domain.ids import EnvRef
from estate.domain.model import Environment, Estate
from estate.domain.plans import RolloutPlan
from estate.domain.usage import module_usage
from estate.domain.waves import WaveMembership, assign_waves
from estate.errors import ConflictError, InputError, NotFoundError, OperationFailed
from estate.runners.pool import LocalPool
from estate.runners.ports import Runner


@dataclass(frozen=True)
class EnvPreview:
    """What the target version would do to one environment."""

    env: str
    current_version: str
    add: int = 0
    change: int = 0
    destroy: int = 0
    destructive: tuple[str, ...] = ()  # "delete module.db.null_resource.x"
    error: str | None = None
    deployment_id: int | None = None


@dataclass(frozen=True)
class WavePreview:
    number: int
    name: str
    envs: tuple[EnvPreview, ...]


@dataclass(frozen=True)
class Preview:
    """A rollout's blast radius, wave by wave, before anything is deployed."""

    module: str
    version: str
    plan: str
    waves: tuple[WavePreview, ...]
    uncovered: tuple[str, ...] = ()
    planned: bool = True

    @property
    def destructive(self) -> list[str]:
        return [f"{e.env}: {d}" for w in self.waves for e in w.envs for d in e.destructive]

    @property
    def destructive_envs(self) -> list[str]:
        return [e.env for w in self.waves for e in w.envs if e.destructive]

    @property
    def destructive_summary(self) -> str:
        """`replace module.db.null_resource.status (x16)`: the same change in many envs is shown once."""
        counts = Counter(d for w in self.waves for e in w.envs for d in e.destructive)
        return "; ".join(f"{what} (x{n})" if n > 1 else what for what, n in counts.items())

    @property
    def errors(self) -> list[str]:
        return [f"{e.env}: {e.error}" for w in self.waves for e in w.envs if e.error]


@dataclass(frozen=True)
class Targets:
    membership: WaveMembership
    current: dict[EnvRef, str] = field(default_factory=dict)


def targets(estate: Estate, module_id: str, version: str, plan: RolloutPlan) -> Targets:
    """Who the rollout touches and in which wave; refuses unknown versions and empty plans."""
    module = estate.module(module_id)
    if module is None:
        raise NotFoundError(f"unknown module '{module_id}'", hint="see `estate module list`")
    if module.version(version) is None:
        known = ", ".join(v.version for v in module.versions)
        raise NotFoundError(
            f"module '{module_id}' has no published version '{version}' (published: {known})",
            hint=f"publish it first: estate module publish {module_id} {version} --source ...",
        )
    usage = module_usage(estate, module_id)
    envs: dict[EnvRef, Environment] = {b.env.ref: b.env for b in usage}
    current = {b.env.ref: b.version or "" for b in usage}
    if not envs:
        raise InputError(f"no environment uses module '{module_id}'; there is nothing to roll out")
    membership = assign_waves(plan, envs.values())
    if not any(membership.waves):
        raise InputError(f"plan '{plan.id}' selects none of the {len(envs)} environments using '{module_id}'")
    return Targets(membership, current)


def plan_of(estate: Estate, plan_id: str) -> RolloutPlan:
    plan = estate.plan(plan_id)
    if plan is None:
        raise NotFoundError(f"unknown rollout plan '{plan_id}'", hint="see `estate plan list`")
    return plan


def check_uncovered(found: Targets, allow_uncovered: bool) -> None:
    if found.membership.uncovered and not allow_uncovered:
        names = ", ".join(str(r) for r in found.membership.uncovered)
        raise InputError(
            f"no wave of the plan selects these environments that use the module: {names}",
            hint="add a wave that selects them, or pass --allow-uncovered to leave them out",
        )


def run_preflight(
    estate: Estate,
    runner: Runner,
    module_id: str,
    version: str,
    plan: RolloutPlan,
    found: Targets,
    *,
    max_parallel: int,
    actor: str,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Preview:
    """Plan every target on `version` (real plans, bounded parallelism) and summarize per wave."""
    refs = [ref for wave in found.membership.waves for ref in wave]
    created = {
        ref: runner.create(
            ref,
            DeploymentKind.PLAN,
            triggered_by=f"preflight by {actor}",
            graph=resolve_graph(estate, ref, {module_id: version}),
        )
        for ref in refs
    }
    results: dict[EnvRef, Deployment] = {}
    with LocalPool(runner, max_parallel) as pool:
        futures = {ref: pool.submit(dep_id) for ref, dep_id in created.items()}
        for ref, future in futures.items():
            results[ref] = future.result()
            progress(len(results), len(refs))
    return _summarize(module_id, version, plan, found, results)


def _env_preview(ref: EnvRef, current: str, dep: Deployment) -> EnvPreview:
    if dep.status is not DeploymentStatus.SUCCEEDED or dep.plan_summary is None:
        return EnvPreview(str(ref), current, error=dep.reason or f"plan {dep.status}", deployment_id=dep.id)
    summary = dep.plan_summary
    return EnvPreview(
        str(ref),
        current,
        summary.add,
        summary.change,
        summary.remove,
        tuple(f"{c.action} {c.address}" for c in summary.destructive),
        deployment_id=dep.id,
    )


def _summarize(
    module_id: str, version: str, plan: RolloutPlan, found: Targets, results: dict[EnvRef, Deployment]
) -> Preview:
    waves = tuple(
        WavePreview(
            n, plan.waves[n - 1].name, tuple(_env_preview(r, found.current.get(r, ""), results[r]) for r in refs)
        )
        for n, refs in enumerate(found.membership.waves, start=1)
    )
    return Preview(module_id, version, plan.id, waves, tuple(str(r) for r in found.membership.uncovered))


def unplanned(module_id: str, version: str, plan: RolloutPlan, found: Targets) -> Preview:
    """The membership without plans (`--no-preflight`)."""
    waves = tuple(
        WavePreview(n, plan.waves[n - 1].name, tuple(EnvPreview(str(r), found.current.get(r, "")) for r in refs))
        for n, refs in enumerate(found.membership.waves, start=1)
    )
    return Preview(module_id, version, plan.id, waves, tuple(str(r) for r in found.membership.uncovered), False)


def check_preflight(preview: Preview, plan: RolloutPlan, allow_destroy: bool) -> list[str]:
    """Refuse on failed plans, and on destructive changes unless allowed; returns warnings to show."""
    failed: dict[str, list[str]] = {}
    for wave in preview.waves:
        for env in wave.envs:
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
        if plan.destructive.value == "block":
            raise ConflictError(
                f"preflight found {len(preview.destructive)} destructive change(s) "
                f"in {len(preview.destructive_envs)} environment(s): {preview.destructive_summary}",
                hint="review them with `estate rollout preview`, then pass --allow-destroy if they are intended",
            )
        return [f"destructive (plan says warn): {d}" for d in preview.destructive]
    return []
