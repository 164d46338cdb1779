"""A fake `Runner` for tests and benchmarks of the engine: deployments recorded in the real store complete
at once, without Terraform.

runner = FakeRunner(DeploymentRepository(store), now=utcnow, failing={EnvRef("checkout", "prod-eu")})
outcome = runner.run(dep_id)   # queued -> planning -> applying -> succeeded (or failed), in one transaction
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus
from estate.domain.ids import EnvRef
from estate.store.deployments import DeploymentRepository, transition
from estate.store.holders import process_identity


class FakeRunner:
    """Succeeds, except for environments in `failing` (reason "apply failed: fake failure") and in `busy`
    (errored as if another deployment held the environment, retryable, that many times in a row)."""

    def __init__(
        self,
        repo: DeploymentRepository,
        now: Callable[[], datetime],
        failing: Iterable[EnvRef] = (),
        *,
        fail_rollbacks: bool = True,
        busy: Mapping[EnvRef, int] | None = None,
    ) -> None:
        self.repo = repo
        self.now = now
        self.failing = set(failing)
        self.fail_rollbacks = fail_rollbacks
        self.busy = dict(busy or {})
        self.holder = process_identity()
        self.runs: list[int] = []  # ids in the order they ran
        self._lock = threading.Lock()

    def run(self, deployment_id: int) -> Deployment:
        dep = self.repo.get(deployment_id)
        if dep.status.is_terminal:
            return dep
        with self._lock:
            self.runs.append(deployment_id)
            busy = self.busy.get(dep.env, 0)
            if busy:
                self.busy[dep.env] = busy - 1
        if busy:
            reason = f"{dep.env} is busy: a hand-run deployment is running"
            return self._move(dep, [(DeploymentStatus.ERRORED, reason)], retryable=True)
        steps: list[tuple[DeploymentStatus, str | None]] = [(DeploymentStatus.PLANNING, None)]
        fails = dep.kind is DeploymentKind.DEPLOY or (dep.kind is DeploymentKind.ROLLBACK and self.fail_rollbacks)
        if dep.kind is not DeploymentKind.PLAN:
            steps.append((DeploymentStatus.APPLYING, None))
        if dep.env in self.failing and fails:
            steps.append((DeploymentStatus.FAILED, "apply failed: fake failure"))
        else:
            steps.append((DeploymentStatus.SUCCEEDED, None))
        return self._move(dep, steps)

    def _move(
        self, dep: Deployment, steps: list[tuple[DeploymentStatus, str | None]], *, retryable: bool = False
    ) -> Deployment:
        """Every step in one transaction: instant, and cheap enough not to hide the engine's own cost."""
        with self.repo.store.begin() as conn:
            for status, reason in steps:
                dep = transition(conn, dep.id, status, self.now(), reason, retryable=retryable, holder=self.holder)
        return dep

    def cancel(self, deployment_id: int) -> bool:
        dep = self.repo.get(deployment_id)
        if dep.status.is_terminal:
            return False
        self.repo.transition(dep.id, DeploymentStatus.CANCELLED, self.now(), "cancelled")
        return True

    def get(self, deployment_id: int) -> Deployment:
        return self.repo.get(deployment_id)
