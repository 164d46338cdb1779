"""Deployment records: the transition table, and the fake runner the engine's tests use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from estate.domain.deployments import (
    TRANSITIONS,
    Deployment,
    DeploymentKind,
    DeploymentStatus,
    Transition,
    TransitionRefused,
)
from estate.domain.graph import ResolvedGraph
from estate.domain.ids import EnvRef
from estate.runners import LocalPool
from estate.testing.fake_runner import FakeRunner

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = DeploymentStatus
ENV = EnvRef("shop", "eph-1")


def record(status: S) -> Deployment:
    return Deployment(
        1, ENV, DeploymentKind.DEPLOY, status, "t", ResolvedGraph(ENV, "ephemeral"), (Transition(status, T0),)
    )


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("target", list(S))
def test_every_transition_is_either_allowed_or_refused(start: S, target: S) -> None:
    if target in TRANSITIONS[start]:
        moved = record(start).advance(target, T0, "why")
        assert moved.status is target and moved.transitions[-1] == Transition(target, T0)
    else:
        with pytest.raises(TransitionRefused):
            record(start).advance(target, T0)


def test_terminal_statuses_have_no_way_out() -> None:
    assert {s for s in S if s.is_terminal} == {s for s in S if not TRANSITIONS[s]}


def test_fake_runner_succeeds_fails_on_demand_and_is_idempotent() -> None:
    runner = FakeRunner(now=lambda: T0, failing={EnvRef("shop", "prod")})
    ok = runner.create(ENV, triggered_by="rollout:r1", rollout_id="r1")
    bad = runner.create(EnvRef("shop", "prod"), triggered_by="rollout:r1")
    with LocalPool(runner, 2) as pool:
        results = [pool.submit(i).result() for i in (ok, bad)]
    assert [r.status for r in results] == [S.SUCCEEDED, S.FAILED]
    assert runner.run(ok) == results[0]
    back = runner.rollback_to(ENV, ok, triggered_by="alex")
    assert runner.get(back).kind is DeploymentKind.ROLLBACK
    assert runner.cancel(back) and not runner.cancel(ok)
