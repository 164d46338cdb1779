"""Deployment use cases: deploy environments, roll one back to an earlier deployment, check drift, and read
the history (records and event logs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from datetime import datetime
from typing import Any

from estate.app.access import AccessControl
from estate.app.audit import AuditTrail
from estate.app.caller import Caller
from estate.app.progress import Progress, Silent
from estate.app.views.deployments import (
    BatchView,
    ChangeView,
    DeploymentPlanView,
    DeploymentSummaryView,
    DeploymentView,
    DriftReport,
    DriftView,
    LogChunk,
    LogEvent,
    StatusChangeView,
)
from estate.domain.access import Action
from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus, PlannedChange
from estate.domain.freezes import require_unfrozen
from estate.domain.graph import ResolvedGraph, resolve_graph
from estate.domain.ids import EnvRef
from estate.domain.lifecycle import check_all
from estate.domain.model import Estate
from estate.runners import DeploymentService, LocalPool
from estate.runners.events import describe
from estate.store import Store
from estate.store.codec import encode
from estate.store.freezes import FreezeStore


class Deployments:
    """Terraform runs of single environments, outside any rollout (a rollout's runs are the engine's)."""

    def __init__(
        self,
        runner: Callable[[], DeploymentService],
        audit: AuditTrail,
        access: AccessControl,
        store: Store,
        now: Callable[[], datetime],
    ) -> None:
        self._runner = runner  # built on first use: it checks the Terraform binary and recovers dead runs
        self.audit = audit
        self.access = access
        self.freezes = FreezeStore(store)
        self.now = now

    @property
    def runner(self) -> DeploymentService:
        return self._runner()

    def deploy(
        self, caller: Caller, refs: Sequence[EnvRef], *, plan_only: bool = False, progress: Progress | None = None
    ) -> BatchView:
        """Deploy (or only plan) environments, `runner.max_parallel` at a time; every graph is resolved first,
        so one bad environment queues nothing. `problem` names the deployments that did not succeed."""
        kind = DeploymentKind.PLAN if plan_only else DeploymentKind.DEPLOY
        results, warnings = self._run_batch(
            caller, f"deploy{' --plan-only' if plan_only else ''}", refs, kind, progress
        )
        failed = [d for d in results if d.status is not DeploymentStatus.SUCCEEDED]
        problem = "; ".join(f"deployment {d.id} of {d.env} {d.status}: {d.reason}" for d in failed) or None
        return BatchView(deployments=[deployment_view(d) for d in results], problem=problem, warnings=warnings)

    def authorize(self, caller: Caller, action: str, refs: Sequence[EnvRef] | None) -> None:
        """Forbidden (and audited) unless `caller` may `action` (deploy, drift, rollback) `refs` (None: every
        environment): the check a job makes before it is queued."""
        if refs is None:
            refs = [e.ref for e in self.runner.repo.load_estate().environments]
        with self.audit.refusals(caller, action, _target(refs)):
            self.access.require(caller, Action.DEPLOY, refs)

    def rollback(self, caller: Caller, ref: EnvRef, to: int) -> BatchView:
        """Re-apply an earlier deployment's resolved graph (same module versions and inputs)."""
        with self.audit.attempt(caller, "rollback", f"env:{ref}", {"to": to}) as attempt:
            self.access.require(caller, Action.DEPLOY, [ref])
            runner = self.runner
            runner.toolchain()
            dep = runner.run(runner.rollback_to(ref, to, triggered_by=caller.subject))
            attempt.outcome, attempt.reason = _outcome(dep)
        problem = None if dep.status is DeploymentStatus.SUCCEEDED else f"rollback {dep.status}: {dep.reason}"
        return BatchView(deployments=[deployment_view(dep)], problem=problem)

    def drift(
        self,
        caller: Caller,
        refs: Sequence[EnvRef] | None,
        *,
        fail_on_drift: bool = False,
        progress: Progress | None = None,
    ) -> DriftReport:
        """Plan environments (default: all) against their configuration and report which drifted and how."""
        if refs is None:
            refs = [e.ref for e in self.runner.repo.load_estate().environments]
        results, _ = self._run_batch(
            caller, "drift", refs, DeploymentKind.PLAN, progress, triggered=f"drift:{caller.subject}"
        )
        views = [_drift_view(d) for d in results]
        problem = None
        if any(v.status != DeploymentStatus.SUCCEEDED for v in views):
            problem = "some drift checks could not run; see `estate deployment show ID`"
        elif fail_on_drift and any(v.drifted for v in views):
            problem = "drift detected in " + ", ".join(v.env for v in views if v.drifted)
        return DriftReport(envs=views, problem=problem)

    def _run_batch(
        self,
        caller: Caller,
        action: str,
        refs: Sequence[EnvRef],
        kind: DeploymentKind,
        progress: Progress | None,
        *,
        triggered: str | None = None,
    ) -> tuple[list[Deployment], list[str]]:
        """Run the batch; also returns the warnings of a deploy (deprecated versions)."""
        progress = progress or Silent()
        refs = list(dict.fromkeys(refs))
        runner = self.runner
        with self.audit.attempt(caller, action, _target(refs), {"envs": [str(r) for r in refs]}) as attempt:
            self.access.require(caller, Action.DEPLOY, refs)
            runner.toolchain()  # a missing binary is an error before anything is recorded
            estate = runner.repo.load_estate()
            graphs = [resolve_graph(estate, ref) for ref in refs]
            warnings = self._guard(estate, graphs) if kind is DeploymentKind.DEPLOY else []
            if warnings:
                attempt.details["warnings"] = warnings
            ids = runner.create_all(graphs, kind, triggered_by=triggered or caller.subject)
            progress.begin(f"{action}: {len(ids)} environment(s)", len(ids))
            done: dict[int, Deployment] = {}
            with LocalPool(runner, runner.config.max_parallel) as pool:
                futures = {pool.submit(i): i for i in ids}
                for future in as_completed(futures):
                    dep = future.result()
                    done[dep.id] = dep
                    progress.advance(str(dep.env), _drifted(dep) if action == "drift" else str(dep.status))
            results = [done[i] for i in ids]
            outcomes = {_outcome(d) for d in results}
            attempt.outcome, attempt.reason = max(outcomes, key=lambda o: o[0] != "ok")
            attempt.details["deployments"] = ids
        return results, warnings

    def _guard(self, estate: Estate, graphs: Sequence[ResolvedGraph]) -> list[str]:
        """Refuse deploys into a frozen scope, and of a defective version (nothing is queued); the warnings of
        deprecated versions."""
        require_unfrozen(self.freezes.active(self.now()), [(str(g.env), g.env_type) for g in graphs], self.now())
        versions = []
        for graph in graphs:
            for r in graph.resources:
                module = estate.module(r.module)
                version = module.version(r.version) if module is not None else None
                if version is not None:
                    versions.append((version, f"{r.alias} of {graph.env}"))
        return check_all(versions)

    def list(
        self, ref: EnvRef | None = None, *, limit: int = 50, before: int | None = None
    ) -> list[DeploymentSummaryView]:
        """Deployments, newest first."""
        return [_summary(d) for d in self.runner.repo.list(ref, limit=limit, before=before)]

    def show(self, deployment_id: int) -> DeploymentView:
        return deployment_view(self.runner.repo.get(deployment_id))

    def log(self, deployment_id: int, after: int = -1) -> LogChunk:
        """Events of a deployment's log after sequence number `after`; `done` once it has ended (read first,
        so a follower that stops on `done` has every event)."""
        repo = self.runner.repo
        done = repo.get(deployment_id).status.is_terminal
        events = [LogEvent(seq=seq, text=describe(e), event=e) for seq, e in repo.events(deployment_id, after=after)]
        return LogChunk(events=events, done=done)


def _target(refs: Sequence[EnvRef]) -> str:
    return f"env:{refs[0]}" if len(refs) == 1 else f"envs:{len(refs)}"


def _outcome(dep: Deployment) -> tuple[str, str]:
    return ("ok", "") if dep.status is DeploymentStatus.SUCCEEDED else (str(dep.status), dep.reason or "")


def _drifted(dep: Deployment) -> str:
    if dep.status is not DeploymentStatus.SUCCEEDED:
        return str(dep.status)
    return "drifted" if dep.plan_summary and dep.plan_summary.drifted else "in sync"


def _changes(changes: Sequence[PlannedChange]) -> list[ChangeView]:
    return [ChangeView(address=c.address, action=c.action) for c in changes]


def _summary(d: Deployment) -> DeploymentSummaryView:
    return DeploymentSummaryView(**_summary_fields(d))


def _summary_fields(d: Deployment) -> dict[str, Any]:
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
        "retryable": d.retryable,
        "retried_by": d.retried_by,
        "pool": d.pool,
    }


def deployment_view(d: Deployment) -> DeploymentView:
    """Everything recorded about a deployment except its events; sensitive values masked."""
    s = d.plan_summary
    return DeploymentView(
        **_summary_fields(d),
        tool_version=d.tool_version,
        graph=encode(d.graph),
        transitions=[StatusChangeView(status=str(t.status), at=t.at) for t in d.transitions],
        plan=None
        if s is None
        else DeploymentPlanView(
            add=s.add,
            change=s.change,
            remove=s.remove,
            changes=_changes(s.changes),
            destructive=_changes(s.destructive),
            drift=_changes(s.drift),
        ),
        plan_source=d.plan_source,
        outputs={k: v.display() for k, v in sorted(d.outputs.items())},
    )


def _drift_view(d: Deployment) -> DriftView:
    s = d.plan_summary
    return DriftView(
        env=str(d.env),
        deployment=d.id,
        status=str(d.status),
        reason=d.reason,
        drifted=bool(s and s.drifted),
        changes=_changes(s.changes if s else ()),
        out_of_band=_changes(s.drift if s else ()),
    )
