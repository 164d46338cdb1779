"""The deployments repository on SQLite and on the throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from estate.domain.deployments import DeploymentKind, DeploymentStatus, OutputValue, PlannedChange, PlanSummary
from estate.domain.graph import ResolvedGraph, ResolvedResource
from estate.domain.ids import EnvRef
from estate.errors import NotFoundError
from estate.store import Store
from estate.store.deployments import DeploymentRepository, NewDeployment
from estate.testing.fake_runner import FakeRunner

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENV = EnvRef("shop", "eph-1")
GRAPH = ResolvedGraph(
    ENV,
    "ephemeral",
    (ResolvedResource("db", "postgres", "postgres", "2.0.0", "/m", MappingProxyType({"size": "small", "n": 2})),),
)
S = DeploymentStatus


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.slow, pytest.mark.postgres])])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeploymentRepository]:
    url = (
        f"sqlite:///{tmp_path / 'e.db'}" if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    )
    store = Store.open(url)
    yield DeploymentRepository(store)
    store.close()


def test_records_round_trip_with_transitions_summary_and_outputs(repo: DeploymentRepository) -> None:
    (dep,) = repo.create([NewDeployment(ENV, DeploymentKind.DEPLOY, "alex", GRAPH, rollout_id="r1")], T0)
    repo.transition(dep.id, S.PLANNING, T0 + timedelta(seconds=1))
    summary = PlanSummary(0, 0, 1, (PlannedChange("module.db.x", "replace"),))
    repo.record_result(
        dep.id,
        now=T0,
        plan_summary=summary,
        tool_version="terraform 1.0.3",
        outputs={"db.host": OutputValue(False, "h"), "db.password": OutputValue(True)},
        secrets="token",
    )
    repo.transition(dep.id, S.FAILED, T0 + timedelta(seconds=2), reason="apply failed: x")

    got = repo.get(dep.id)
    assert got.graph == GRAPH and got.rollout_id == "r1" and got.kind is DeploymentKind.DEPLOY
    assert [(t.status, t.at) for t in got.transitions] == [
        (S.QUEUED, T0),
        (S.PLANNING, T0 + timedelta(seconds=1)),
        (S.FAILED, T0 + timedelta(seconds=2)),
    ]
    assert got.plan_summary == summary and [c.address for c in got.plan_summary.destructive] == ["module.db.x"]
    assert got.outputs["db.password"] == OutputValue(True, None) and repo.secrets(dep.id) == "token"
    assert (got.status, got.reason, got.tool_version) == (S.FAILED, "apply failed: x", "terraform 1.0.3")


def test_events_append_in_order_and_page(repo: DeploymentRepository) -> None:
    (dep,) = repo.create([NewDeployment(ENV, DeploymentKind.PLAN, "alex", GRAPH)], T0)
    repo.append_events(dep.id, repo.next_seq(dep.id), [{"type": "a"}, {"type": "b"}])
    repo.append_events(dep.id, repo.next_seq(dep.id), [{"type": "c"}])
    assert [(s, e["type"]) for s, e in repo.events(dep.id)] == [(0, "a"), (1, "b"), (2, "c")]
    assert [s for s, _ in repo.events(dep.id, after=1)] == [2]


def test_list_filters_and_refuses_bad_transitions(repo: DeploymentRepository) -> None:
    first, other = repo.create(
        [
            NewDeployment(ENV, DeploymentKind.DEPLOY, "a", GRAPH),
            NewDeployment(EnvRef("shop", "dev"), DeploymentKind.DEPLOY, "a", GRAPH),
        ],
        T0,
    )
    repo.transition(first.id, S.PLANNING, T0)
    assert [d.id for d in repo.list()] == [other.id, first.id]
    assert [d.id for d in repo.list(ENV)] == [first.id]
    assert [d.id for d in repo.list(statuses=[S.PLANNING])] == [first.id]
    with pytest.raises(Exception, match="cannot go from planning to queued"):
        repo.transition(first.id, S.QUEUED, T0)
    with pytest.raises(NotFoundError):
        repo.get(9999)


def test_fake_runner_runs_stored_deployments_fails_errors_on_demand_and_is_idempotent(
    repo: DeploymentRepository,
) -> None:
    prod, dev = EnvRef("shop", "prod"), EnvRef("shop", "dev")
    runner = FakeRunner(repo, lambda: T0, failing={prod}, busy={dev: 1})
    ok, bad, busy, again = repo.create(
        [NewDeployment(e, DeploymentKind.DEPLOY, "rollout:r1", GRAPH, "r1") for e in (ENV, prod, dev, dev)], T0
    )
    results = [runner.run(d.id) for d in (ok, bad, busy, again)]
    assert [r.status for r in results] == [S.SUCCEEDED, S.FAILED, S.ERRORED, S.SUCCEEDED]
    assert results[2].retryable and "busy" in (results[2].reason or "")
    assert runner.run(ok.id) == results[0] == repo.get(ok.id), "a finished deployment is returned as recorded"
    (queued,) = repo.create([NewDeployment(ENV, DeploymentKind.ROLLBACK, "alex", GRAPH)], T0)
    assert runner.cancel(queued.id) and not runner.cancel(ok.id)
    assert repo.get(queued.id).status is S.CANCELLED
