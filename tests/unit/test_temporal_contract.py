"""What the Temporal engine sends around: the data converter keeps the domain's tagged unions, read-only
mappings and datetimes (Temporal's default one does not), compresses large payloads, and a state delta
applied to the state it was taken from gives the new state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from hypothesis import given
from hypothesis import strategies as st

from estate.domain import rollout_events as ev
from estate.domain.deployments import DeploymentStatus
from estate.domain.ids import EnvRef
from estate.domain.plans import OnFailure, RolloutPlan, Tolerance, Wave
from estate.domain.rollout import decide, decide_observations
from estate.domain.rollout_state import RolloutState, new_rollout
from estate.domain.runner_rules import RunnerRule
from estate.domain.selectors import Selector
from estate.temporal import contract as c
from estate.temporal.converter import ZLIB, data_converter

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
COMMANDS = [
    ev.Start("alex"),
    ev.Pause("bob"),
    ev.Resume("bob"),
    ev.Abort("carol"),
    ev.Rollback("alex", 2),
    ev.Rerun("alex", 1, only_failed=True),
    ev.Approve("bob", override=True, roles=frozenset({"approver"})),
    ev.Retarget("alex", "2.0.1"),
    ev.Promote("alex"),
]


def rollout(n: int = 6) -> RolloutState:
    refs = [EnvRef("shop", f"e{i}") for i in range(n)]
    waves = tuple(Wave(name, Selector(), 2, Tolerance(count=0), (), OnFailure.HALT, True) for name in ("a", "b"))
    return new_rollout(
        rollout_id="postgres-1",
        module="postgres",
        version="2.0.0",
        plan=RolloutPlan("p", waves),
        membership=[refs[: n // 2], refs[n // 2 :]],
        previous_versions=dict.fromkeys(refs, "1.0.0"),
        started_by="alex",
        now=T0,
    )


def roundtrip(value: object, hint: object) -> object:
    converter = data_converter()
    payloads = asyncio.run(converter.encode([value]))
    return asyncio.run(converter.decode(payloads, [hint]))[0]  # type: ignore[list-item]


def test_every_command_comes_back_as_itself_not_as_the_first_union_arm_that_fits() -> None:
    for command in COMMANDS:
        back = roundtrip(c.CommandRequest("u1", command), c.CommandRequest)
        assert back == c.CommandRequest("u1", command)


def test_a_rollout_state_with_read_only_mappings_and_datetimes_round_trips() -> None:
    state = decide(rollout(), ev.Start("alex"), T0).state
    back = roundtrip(c.RolloutInput(state, "estate", (c.Queued(7, ev.Start("alex")),)), c.RolloutInput)
    assert isinstance(back, c.RolloutInput)
    assert back.state == state and back.queued == (c.Queued(7, ev.Start("alex")),)
    rule = RunnerRule("eu", labels=MappingProxyType({"region": "eu"}))
    assert roundtrip(rule, RunnerRule) == rule


def test_large_payloads_are_compressed_far_below_temporals_blob_limit() -> None:
    state = rollout(10_000)
    (payload,) = asyncio.run(data_converter().encode([c.RolloutInput(state, "estate")]))
    assert payload.metadata["encoding"] == ZLIB
    assert len(payload.data) < 512 * 1024, f"{len(payload.data)} bytes for 10,000 environments"
    (small,) = asyncio.run(data_converter().encode([c.Progress("running", False, 1)]))
    assert small.metadata["encoding"] != ZLIB


@given(st.lists(st.integers(0, 5), max_size=12), st.booleans())
def test_a_delta_applied_to_the_state_it_came_from_gives_the_new_state(finishing: list[int], fail: bool) -> None:
    before = decide(rollout(), ev.Start("alex"), T0).state
    events: list[ev.Observation] = []
    for i in dict.fromkeys(finishing):
        env = before.envs[i]
        if env.key is not None:
            status = DeploymentStatus.FAILED if fail else DeploymentStatus.SUCCEEDED
            events.append(ev.DeploymentFinished(env.key, env.env, str(i), status, "x"))
    decision = decide_observations(before, events, T0 + timedelta(seconds=1))
    after = decision.state
    change = c.delta(before, after, decision.touched)
    assert c.apply_delta(before, change) == after
    assert len(change.envs) <= len(events) + 2  # only what changed travels (plus the envs that started)
    assert all(w.envs == () for w in change.waves)
