"""The runner port: what the rollout engine needs to deploy environments, and nothing more.

`DeploymentService` (real Terraform) and `estate.testing.fake_runner.FakeRunner` implement it;
`LocalPool` runs any `Runner` with bounded concurrency.
"""

from __future__ import annotations

from typing import Protocol

from estate.domain.deployments import Deployment, DeploymentKind
from estate.domain.graph import ResolvedGraph
from estate.domain.ids import EnvRef


class Runner(Protocol):
    def create(
        self,
        env: EnvRef,
        kind: DeploymentKind = DeploymentKind.DEPLOY,
        *,
        triggered_by: str,
        rollout_id: str | None = None,
        graph: ResolvedGraph | None = None,
    ) -> int:
        """Record a queued deployment of `graph` (default: `env`'s current graph, rollout pins included)."""
        ...

    def rollback_to(self, env: EnvRef, deployment_id: int, *, triggered_by: str, rollout_id: str | None = None) -> int:
        """Record a queued `rollback` re-applying `deployment_id`'s resolved graph; its id."""
        ...

    def run(self, deployment_id: int) -> Deployment:
        """Run a deployment to its end (blocking, idempotent) and return the final record."""
        ...

    def cancel(self, deployment_id: int) -> bool:
        """Ask a queued or running deployment to stop; False when it had already finished."""
        ...

    def get(self, deployment_id: int) -> Deployment: ...
