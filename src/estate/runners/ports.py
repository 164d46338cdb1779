"""The runner port: what the rollout engine needs to run deployments, and nothing more.

Deployments are created by the store (a rollout's in the same transaction as its pins and links, see
`estate.store.rollouts`); a runner only runs them. `DeploymentService` (real Terraform) and
`estate.testing.fake_runner.FakeRunner` implement it; `LocalPool` runs any `Runner` with bounded concurrency.
"""

from __future__ import annotations

from typing import Protocol

from estate.domain.deployments import Deployment


class Runner(Protocol):
    def run(self, deployment_id: int) -> Deployment:
        """Run a deployment to its end (blocking, idempotent) and return the final record: succeeded,
        failed (the change failed), errored (it could not be attempted) or cancelled."""
        ...

    def cancel(self, deployment_id: int) -> bool:
        """Ask a queued or running deployment to stop; False when it had already finished."""
        ...

    def get(self, deployment_id: int) -> Deployment: ...
