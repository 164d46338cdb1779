"""Deployment records: the transition table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from estate.domain.deployments import (
    TRANSITIONS,
    Deployment,
    DeploymentKind,
    DeploymentStatus,
    StatusChange,
    TransitionRefused,
)
from estate.domain.graph import ResolvedGraph
from estate.domain.ids import EnvRef

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = DeploymentStatus
ENV = EnvRef("shop", "eph-1")


def record(status: S) -> Deployment:
    return Deployment(
        1, ENV, DeploymentKind.DEPLOY, status, "t", ResolvedGraph(ENV, "ephemeral"), (StatusChange(status, T0),)
    )


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("target", list(S))
def test_every_transition_is_either_allowed_or_refused(start: S, target: S) -> None:
    if target in TRANSITIONS[start]:
        moved = record(start).advance(target, T0, "why")
        assert moved.status is target and moved.transitions[-1] == StatusChange(target, T0)
    else:
        with pytest.raises(TransitionRefused):
            record(start).advance(target, T0)


def test_terminal_statuses_have_no_way_out() -> None:
    assert {s for s in S if s.is_terminal} == {s for s in S if not TRANSITIONS[s]}


def test_only_failed_judges_the_change() -> None:
    """Errored and interrupted runs end like failed ones, but are different statuses (never counted as failed)."""
    for status in (S.ERRORED, S.INTERRUPTED):
        assert status.is_terminal and status is not S.FAILED
    assert S.INTERRUPTED in TRANSITIONS[S.APPLYING] and S.INTERRUPTED not in TRANSITIONS[S.QUEUED]
