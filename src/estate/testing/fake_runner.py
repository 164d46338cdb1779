"""A fake `Runner` for unit tests of the engine: deployments complete at once, in memory.

runner = FakeRunner(now=lambda: T0, failing={EnvRef("checkout", "prod-eu")})
dep_id = runner.create(EnvRef("checkout", "eph-1"), triggered_by="rollout:r1", rollout_id="r1")
assert runner.run(dep_id).status is DeploymentStatus.SUCCEEDED
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus, Transition
from estate.domain.graph import ResolvedGraph
from estate.domain.ids import EnvRef
from estate.errors import NotFoundError


class FakeRunner:
    """Succeeds, except for environments in `failing` (reason "apply failed: fake failure")."""

    def __init__(
        self, now: Callable[[], datetime], failing: Iterable[EnvRef] = (), *, fail_rollbacks: bool = True
    ) -> None:
        self.now = now
        self.failing = set(failing)
        self.fail_rollbacks = fail_rollbacks
        self.deployments: dict[int, Deployment] = {}
        self.runs: list[int] = []  # ids in the order they ran
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def create(
        self,
        env: EnvRef,
        kind: DeploymentKind = DeploymentKind.DEPLOY,
        *,
        triggered_by: str,
        rollout_id: str | None = None,
        graph: ResolvedGraph | None = None,
    ) -> int:
        with self._lock:
            dep_id = next(self._ids)
            self.deployments[dep_id] = Deployment(
                dep_id,
                env,
                kind,
                DeploymentStatus.QUEUED,
                triggered_by,
                graph or ResolvedGraph(env, ""),
                (Transition(DeploymentStatus.QUEUED, self.now()),),
                rollout_id=rollout_id,
            )
        return dep_id

    def rollback_to(self, env: EnvRef, deployment_id: int, *, triggered_by: str, rollout_id: str | None = None) -> int:
        target = self.get(deployment_id)
        return self.create(
            env, DeploymentKind.ROLLBACK, triggered_by=triggered_by, rollout_id=rollout_id, graph=target.graph
        )

    def run(self, deployment_id: int) -> Deployment:
        dep = self.get(deployment_id)
        if dep.status.is_terminal:
            return dep
        now = self.now()
        dep = dep.advance(DeploymentStatus.PLANNING, now)
        fails = dep.kind is DeploymentKind.DEPLOY or (dep.kind is DeploymentKind.ROLLBACK and self.fail_rollbacks)
        if dep.env in self.failing and fails:
            dep = dep.advance(DeploymentStatus.APPLYING, now).advance(
                DeploymentStatus.FAILED, now, "apply failed: fake failure"
            )
        else:
            if dep.kind is not DeploymentKind.PLAN:
                dep = dep.advance(DeploymentStatus.APPLYING, now)
            dep = dep.advance(DeploymentStatus.SUCCEEDED, now)
        with self._lock:
            self.deployments[deployment_id] = dep
            self.runs.append(deployment_id)
        return dep

    def cancel(self, deployment_id: int) -> bool:
        dep = self.get(deployment_id)
        if dep.status.is_terminal:
            return False
        with self._lock:
            self.deployments[deployment_id] = dep.advance(DeploymentStatus.CANCELLED, self.now(), "cancelled")
        return True

    def get(self, deployment_id: int) -> Deployment:
        try:
            return self.deployments[deployment_id]
        except KeyError:
            raise NotFoundError(f"no deployment {deployment_id}") from None
