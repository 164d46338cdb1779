"""A 20,000-environment rollout on Temporal with a fake runner stays inside Temporal's limits, here lowered
so that they bind quickly: at most 10,000 history events and 600 pending activities per run (continue-as-new
is suggested at 2,000 events). The rollout completes, every environment on the target version, every
deployment succeeded once, and it took several runs of the workflow."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from estate.app import Caller, bootstrap
from estate.config import load_estate
from estate.domain.deployments import DeploymentStatus
from estate.store.deployments import DeploymentRepository
from estate.temporal.client import TemporalSettings, connect
from estate.temporal.contract import workflow_id
from estate.testing.temporal_server import TemporalDevServer
from tests.integration.test_temporal_engine import fake_runner
from tests.support.temporal import engine_environ, workers_in_thread

pytestmark = pytest.mark.slow

ENVS = int(os.environ.get("ESTATE_TEST_ENVS", "20000"))
HISTORY_LIMIT = 10_000
LIMITS = {
    "limit.historyCount.error": HISTORY_LIMIT,
    "limit.historyCount.warn": 8_000,
    "limit.historyCount.suggestContinueAsNew": 2_000,
    "limit.numPendingActivities.error": 600,
}


@pytest.fixture
def tight_server(tmp_path: Path) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(tmp_path / "temporal.db", dynamic_config=LIMITS).start()
    yield server
    server.stop()


def estate(n: int) -> dict[str, object]:
    per_project = 500
    return {
        "env_types": [{"id": "ephemeral", "rank": 0}, {"id": "production", "rank": 1}],
        "modules": [
            {
                "id": "postgres",
                "resource_type": "postgres",
                "versions": [{"version": "1.0.0", "source": "/srv/pg-1"}, {"version": "2.0.0", "source": "/srv/pg-2"}],
            }
        ],
        "module_rules": [{"resource_type": "postgres", "module": "postgres", "version": "1.0.0"}],
        "projects": [
            {
                "id": f"p{k}",
                "owner": "team",
                "resources": {"db": {"type": "postgres"}},
                "environments": [
                    {"id": f"e{i}", "type": "ephemeral" if i % 2 else "production"} for i in range(per_project)
                ],
            }
            for k in range(n // per_project)
        ],
        "rollout_plans": [
            {
                "id": "big",
                "waves": [
                    {"name": t, "select": {"env_type": t}, "max_parallel": 1_000, "auto_promote": True}
                    for t in ("ephemeral", "production")
                ],
            }
        ],
    }


async def runs_of(settings: TemporalSettings, rollout: str) -> list[int]:
    client = await connect(settings)
    lengths = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id(settings.task_queue, rollout)}'"):
        described = await client.get_workflow_handle(execution.id, run_id=execution.run_id).describe()
        lengths.append(described.raw_description.workflow_execution_info.history_length)
    return lengths


def test_twenty_thousand_environments_stay_inside_temporals_limits(
    tmp_path: Path, tight_server: TemporalDevServer
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(estate(ENVS)))
    environ = {"ESTATE_HOME": str(tmp_path / "home"), **engine_environ(tight_server)}
    app = bootstrap(environ)
    app.store.sync(load_estate(path).estate, prune=False, force=False, dry_run=False, actor="t", now=datetime.now(UTC))
    with workers_in_thread(environ, ["default"], runner=fake_runner, max_runs=8):
        rollout = app.rollouts.start(Caller("alex"), "postgres", "2.0.0", "big", preflight=False).id
    state = app.rollouts.state(rollout)
    assert str(state.phase) == "completed", state.reason
    assert len(state.envs) == ENVS and {e.version for e in state.envs} == {"2.0.0"}
    deployments = DeploymentRepository(app.store).list(limit=ENVS + 1)
    assert len(deployments) == ENVS and {d.status for d in deployments} == {DeploymentStatus.SUCCEEDED}
    lengths = asyncio.run(runs_of(TemporalSettings.build(environ, {}), rollout))
    assert len(lengths) >= 3, f"continued as new only {len(lengths) - 1} times: {lengths}"
    assert max(lengths) < HISTORY_LIMIT, lengths
    app.close()
