"""The pure rollout state machine: the story, every (phase, command) pair, and Hypothesis properties.

`Sim` plays the engine: it feeds events to `decide`, keeps what is in flight by action key and
answers deployments and gates. The stateful test drives random sequences of commands and
observations and checks the rules the machine guarantees after every single decision.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from estate.domain.deployments import DeploymentKind, DeploymentStatus
from estate.domain.gate_eval import Sample, Verdict, subjects
from estate.domain.ids import EnvRef
from estate.domain.plans import (
    ApprovalGate,
    BakeGate,
    Gate,
    OnFailure,
    PrometheusGate,
    RolloutPlan,
    Tolerance,
    Wave,
)
from estate.domain.rollout import ALLOWED, Decision, decide, decide_observations, outstanding
from estate.domain.rollout_events import (
    COMMANDS,
    Abort,
    Action,
    Approve,
    Command,
    DeploymentFinished,
    DeploymentStarted,
    Event,
    Finalize,
    GateSampled,
    Pause,
    Promote,
    Rerun,
    Resume,
    Retarget,
    Rollback,
    SampleGate,
    Start,
    StartDeployment,
    Tick,
    WakeAt,
)
from estate.domain.rollout_state import (
    EnvState,
    EnvStatus,
    RolloutPhase,
    RolloutState,
    WavePhase,
    approval_gates,
    exit_gate_indexes,
    new_rollout,
)
from estate.domain.selectors import Selector
from estate.store.codec import decode_as, encode

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
APPROVER = frozenset({"approver"})


def ref(text: str) -> EnvRef:
    return EnvRef.parse(text)


def done(key: str, env: EnvRef, deployment_id: str, succeeded: bool, reason: str = "") -> DeploymentFinished:
    """What the engine reports when a deployment succeeded, or failed (Terraform ran and the change failed)."""
    status = DeploymentStatus.SUCCEEDED if succeeded else DeploymentStatus.FAILED
    return DeploymentFinished(key, env, deployment_id, status, reason)


def round_of(state: RolloutState, action: SampleGate, verdict: Verdict) -> GateSampled:
    """One sampling round whose samples lead to `verdict`: inside the gate's bounds, beyond them, or errors."""
    gate = action.gate
    inside = gate.max if gate.max is not None else (gate.min if gate.min is not None else 0.0)
    outside = gate.max + 1 if gate.max is not None else (gate.min - 1 if gate.min is not None else 0.0)
    names = subjects(gate, state.spec(action.wave).name, [str(e) for e in action.envs])
    samples = tuple(
        Sample(name, action.round, "q", error="Prometheus down")
        if verdict is Verdict.INCONCLUSIVE
        else Sample.of(name, action.round, "q", inside if verdict is Verdict.PASSED else outside)
        for name in names
    )
    return GateSampled(action.key, action.wave, action.gate_index, action.round, samples)


def wave(name: str, **options: Any) -> Wave:
    return Wave(name, Selector(env_types=frozenset({name})), **options)


def rollout(
    plan: RolloutPlan, membership: Sequence[Sequence[str]], previous: dict[str, str], version: str = "2.0.0"
) -> RolloutState:
    return new_rollout(
        rollout_id="r1",
        module="postgres",
        version=version,
        plan=plan,
        membership=[[ref(e) for e in refs] for refs in membership],
        previous_versions={ref(e): v for e, v in previous.items()},
        started_by="alex",
        now=T0,
    )


class Sim:
    """Plays the engine: sends events, remembers deployments and gate evaluations in flight."""

    def __init__(self, state: RolloutState) -> None:
        self.state = state
        self.now = T0
        self.deployments: dict[str, StartDeployment] = {}
        self.gates: dict[str, SampleGate] = {}
        self.wakes: list[WakeAt] = []
        self.finalized: list[Finalize] = []
        self.log: list[str] = []

    def send(self, event: Event, seconds: float = 1) -> Decision:
        self.now += timedelta(seconds=seconds)
        decision = decide(self.state, event, self.now)
        self.state = decision.state
        self.log += [str(t) for t in decision.log]
        if isinstance(event, DeploymentFinished) and decision.refused is None:
            del self.deployments[event.key]
        if isinstance(event, GateSampled) and decision.refused is None:
            del self.gates[event.key]
        for action in decision.actions:
            self._record(action)
        return decision

    def _record(self, action: Action) -> None:
        if isinstance(action, StartDeployment):
            self.deployments[action.key] = action
        elif isinstance(action, SampleGate):
            self.gates[action.key] = action
        elif isinstance(action, WakeAt):
            self.wakes.append(action)
        else:
            self.finalized.append(action)

    def ok(self, command: Command) -> Decision:
        decision = self.send(command)
        assert decision.refused is None, decision.refused
        return decision

    def finish(self, env: str, succeeded: bool = True, reason: str = "") -> Decision:
        key = next(k for k, a in self.deployments.items() if a.env == ref(env))
        return self.send(done(key, ref(env), f"dep-{key}", succeeded, reason))

    def finish_all(self, succeeded: bool = True) -> None:
        """Finish every deployment, including those started meanwhile; rollbacks always succeed."""
        while self.deployments:
            action = next(iter(self.deployments.values()))
            self.finish(str(action.env), succeeded or action.kind is DeploymentKind.ROLLBACK)

    def env(self, name: str) -> EnvState:
        env = self.state.env(ref(name))
        assert env is not None
        return env

    def answer_gate(self, verdict: Verdict) -> Decision:
        """Answer every sampling round of the gate being evaluated so that it ends with `verdict`."""
        while True:
            (action,) = self.gates.values()
            decision = self.send(round_of(self.state, action, verdict))
            if not any(isinstance(a, SampleGate) and a.gate_index == action.gate_index for a in decision.actions):
                return decision

    def versions(self) -> dict[str, str]:
        return {str(e.env): e.version for e in self.state.envs}


# -- the story ------------------------------------------------------------------------------------

STORY_PLAN = RolloutPlan(
    "standard",
    (
        wave(
            "ephemeral",
            max_parallel=10,
            on_failure=OnFailure.ROLLBACK,
            gates=(PrometheusGate("max(pg_errors_ratio)", max=0.05, count=3),),
        ),
        wave("development", failure_tolerance=Tolerance(1)),
        wave("staging", gates=(BakeGate(600),)),
        wave(
            "production",
            max_parallel=1,
            gates=(PrometheusGate("sum(rate(pg_errors_total[5m]))", max=0.01), ApprovalGate("approver", True)),
        ),
    ),
)
STORY_ENVS = [
    ["checkout/eph-1", "search/eph-1"],
    ["checkout/dev", "search/dev"],
    ["checkout/staging"],
    ["checkout/prod", "search/prod"],
]
STORY_PREVIOUS = {
    "checkout/eph-1": "1.0.0",
    "search/eph-1": "1.2.0",  # environments may start on different versions
    "checkout/dev": "1.0.0",
    "search/dev": "1.2.0",
    "checkout/staging": "1.0.0",
    "checkout/prod": "1.0.0",
    "search/prod": "1.1.0",
}


def test_the_story_from_ephemeral_to_production() -> None:
    sim = Sim(rollout(STORY_PLAN, STORY_ENVS, STORY_PREVIOUS))
    start = sim.ok(Start("alex"))
    assert {(str(a.env), a.version) for a in start.actions if isinstance(a, StartDeployment)} == {
        ("checkout/eph-1", "2.0.0"),
        ("search/eph-1", "2.0.0"),
    }
    sim.finish_all()
    assert sim.state.current_wave.phase is WavePhase.VERIFYING

    # Wave 1 fails its Prometheus gate: it rolls back on its own, each env to its own previous version.
    rollback = sim.answer_gate(Verdict.FAILED)
    assert {(str(a.env), a.version, a.kind) for a in rollback.actions if isinstance(a, StartDeployment)} == {
        ("checkout/eph-1", "1.0.0", DeploymentKind.ROLLBACK),
        ("search/eph-1", "1.2.0", DeploymentKind.ROLLBACK),
    }
    sim.finish_all()
    assert sim.state.phase is RolloutPhase.FAILED
    assert sim.state.wave(1).phase is WavePhase.ROLLED_BACK
    assert sim.versions()["checkout/eph-1"] == "1.0.0"
    assert sim.versions()["search/eph-1"] == "1.2.0"
    assert sim.send(Promote("alex")).refused is not None

    # Patch, retarget, rerun wave 1: it passes this time.
    sim.ok(Retarget("alex", "2.0.1"))
    rerun = sim.ok(Rerun("alex"))
    assert {a.version for a in rerun.actions if isinstance(a, StartDeployment)} == {"2.0.1"}
    sim.finish_all()
    sim.answer_gate(Verdict.PASSED)
    assert sim.state.phase is RolloutPhase.AWAITING_PROMOTION

    # Wave 2 tolerates one failure; wave 3 bakes for 10 minutes.
    sim.ok(Promote("alex"))
    sim.finish("checkout/dev", succeeded=False, reason="apply failed")
    sim.finish("search/dev")
    assert sim.state.phase is RolloutPhase.AWAITING_PROMOTION
    sim.ok(Promote("alex"))
    sim.finish_all()
    assert sim.state.current_wave.phase is WavePhase.VERIFYING
    assert sim.wakes[-1].when == sim.now + timedelta(seconds=600)
    sim.send(Tick(), seconds=300)
    assert sim.state.current_wave.phase is WavePhase.VERIFYING
    sim.send(Tick(), seconds=300)
    assert sim.state.phase is RolloutPhase.AWAITING_PROMOTION

    # Production needs an approver who is not the one who started the rollout.
    sim.ok(Promote("alex"))
    assert sim.state.phase is RolloutPhase.AWAITING_APPROVAL
    assert not sim.deployments
    refused = sim.send(Approve("alex", roles=APPROVER))
    assert refused.refused is not None and "four-eyes" in refused.refused
    assert sim.send(Approve("carol")).refused is not None  # not an approver
    approved = sim.ok(Approve("bob", roles=APPROVER))
    assert len([a for a in approved.actions if isinstance(a, StartDeployment)]) == 1  # max_parallel 1
    sim.finish("checkout/prod")
    sim.finish("search/prod")
    done = sim.answer_gate(Verdict.PASSED)
    assert sim.state.phase is RolloutPhase.COMPLETED
    assert done.actions == (Finalize("r1:finalize:2.0.1", "postgres", "2.0.1"),)
    assert sim.versions() == {**dict.fromkeys(STORY_PREVIOUS, "2.0.1"), "checkout/dev": "1.0.0"}
    assert "wave 1 verifying -> rolling_back (gate 0 failed)" in sim.log
    assert "rollout running -> completed" in sim.log


# -- examples ---------------------------------------------------------------------------------------

TWO_WAVES = RolloutPlan(
    "two",
    (wave("ephemeral", max_parallel=2), wave("production", gates=(ApprovalGate("approver"),))),
)


def two_waves(plan: RolloutPlan = TWO_WAVES) -> Sim:
    envs = [["a/eph-1", "a/eph-2", "a/eph-3"], ["a/prod"]]
    return Sim(rollout(plan, envs, {"a/eph-1": "1.0.0", "a/eph-2": "1.1.0", "a/eph-3": "1.0.0", "a/prod": "1.0.0"}))


def test_max_parallel_bounds_deployments_in_flight() -> None:
    sim = two_waves()
    assert len(sim.ok(Start("alex")).actions) == 2
    follow_up = sim.finish("a/eph-1")
    assert [str(a.env) for a in follow_up.actions if isinstance(a, StartDeployment)] == ["a/eph-3"]


def test_halt_once_failures_exceed_tolerance_then_override() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    halted = sim.finish("a/eph-1", succeeded=False, reason="boom")
    assert halted.actions == ()  # a/eph-3 does not start
    assert sim.state.phase is RolloutPhase.HALTED
    assert "1 of 3 environments failed" in sim.state.reason
    assert "in flight" in (sim.send(Approve("bob", override=True)).refused or "")
    sim.finish("a/eph-2")  # in flight: finishes and is recorded
    assert sim.send(Approve("bob")).refused is not None  # a plain approve does not accept a halted wave
    sim.ok(Approve("bob", override=True))
    assert sim.state.wave(1).overridden_by == "bob"
    assert sim.env("a/eph-3").status is EnvStatus.SKIPPED
    assert sim.state.phase is RolloutPhase.AWAITING_PROMOTION  # an override never promotes by itself


def test_inconclusive_gate_halts_even_with_rollback_policy() -> None:
    plan = RolloutPlan(
        "p",
        (
            wave(
                "ephemeral",
                max_parallel=3,
                on_failure=OnFailure.ROLLBACK,
                gates=(PrometheusGate("q"),),
                auto_promote=True,
            ),
            TWO_WAVES.waves[1],
        ),
    )
    sim = two_waves(plan)
    sim.ok(Start("alex"))
    sim.finish_all()
    sim.answer_gate(Verdict.INCONCLUSIVE)
    assert sim.state.phase is RolloutPhase.HALTED
    assert sim.state.wave(1).phase is WavePhase.INCONCLUSIVE
    assert not sim.deployments


def test_pause_lets_in_flight_finish_and_starts_nothing_until_resume() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    sim.ok(Pause("alex"))
    assert sim.finish("a/eph-1").actions == ()
    assert sim.env("a/eph-1").status is EnvStatus.SUCCEEDED
    resumed = sim.ok(Resume("alex"))
    assert [str(a.env) for a in resumed.actions if isinstance(a, StartDeployment)] == ["a/eph-3"]


def test_abort_records_in_flight_deployments_and_starts_nothing() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    sim.ok(Abort("alex"))
    finished = sim.finish("a/eph-1")
    assert finished.actions == ()
    assert sim.env("a/eph-1").version == "2.0.0"
    assert sim.env("a/eph-3").status is EnvStatus.SKIPPED
    assert sim.send(Rollback("alex")).refused is not None


def test_retarget_does_not_change_in_flight_deployments() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    sim.ok(Retarget("alex", "2.0.1"))
    later = sim.finish("a/eph-1")
    assert sim.env("a/eph-1").version == "2.0.0"
    assert [a.version for a in later.actions if isinstance(a, StartDeployment)] == ["2.0.1"]


def test_rollback_touches_only_what_this_rollout_changed() -> None:
    sim = two_waves(RolloutPlan("one-by-one", (wave("ephemeral"), TWO_WAVES.waves[1])))
    sim.ok(Start("alex"))
    sim.finish("a/eph-1")
    sim.ok(Pause("alex"))
    sim.finish("a/eph-2", succeeded=False)
    rollback = sim.ok(Rollback("alex"))  # also resumes: a rollback is an order to act now
    assert [(str(a.env), a.version) for a in rollback.actions if isinstance(a, StartDeployment)] == [
        ("a/eph-1", "1.0.0")
    ]
    assert sim.env("a/eph-3").status is EnvStatus.SKIPPED
    sim.finish("a/eph-1")
    assert sim.deployments["r1:a/eph-2:rollback-2"].version == "1.1.0"  # its own previous version
    sim.finish_all()
    assert sim.state.wave(1).phase is WavePhase.ROLLED_BACK
    assert sim.versions() == {"a/eph-1": "1.0.0", "a/eph-2": "1.1.0", "a/eph-3": "1.0.0", "a/prod": "1.0.0"}
    assert sim.env("a/eph-3").attempts == 0
    assert sim.send(Rollback("alex")).actions == ()  # idempotent


def test_a_failed_rollback_halts_and_can_be_retried() -> None:
    plan = RolloutPlan("p", (wave("ephemeral", max_parallel=3, on_failure=OnFailure.ROLLBACK), TWO_WAVES.waves[1]))
    sim = two_waves(plan)
    sim.ok(Start("alex"))
    sim.finish("a/eph-1", succeeded=False)
    sim.finish("a/eph-2")
    sim.finish("a/eph-3")
    sim.finish("a/eph-1", succeeded=False)  # its rollback fails
    sim.finish_all()
    assert sim.state.phase is RolloutPhase.HALTED
    assert "a/eph-1" in sim.state.reason
    assert "rolled back" in (sim.send(Approve("bob", override=True)).refused or "")
    retry = sim.ok(Rollback("alex"))
    assert [str(a.env) for a in retry.actions if isinstance(a, StartDeployment)] == ["a/eph-1"]


def test_rollback_of_an_earlier_wave_makes_it_current_again() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    sim.finish_all()
    sim.ok(Promote("alex"))
    assert sim.state.phase is RolloutPhase.AWAITING_APPROVAL
    assert sim.send(Rollback("alex", wave=3)).refused == "there is no wave 3: the plan has 2 waves"
    sim.ok(Rollback("alex", wave=1))
    assert sim.state.current == 1
    assert sim.state.wave(2).phase is WavePhase.PENDING
    sim.finish_all()
    assert sim.state.phase is RolloutPhase.FAILED


def one_wave(**options: Any) -> Sim:
    plan = RolloutPlan("one", (wave("ephemeral", max_parallel=3, **options),))
    return Sim(rollout(plan, [["a/e1", "a/e2"]], {"a/e1": "1.0.0", "a/e2": "1.0.0"}))


def errored(sim: Sim, env: str, *, retryable: bool, reason: str = "a/e1 is busy") -> Decision:
    key = next(k for k, a in sim.deployments.items() if a.env == ref(env))
    return sim.send(DeploymentFinished(key, ref(env), f"dep-{key}", DeploymentStatus.ERRORED, reason, retryable))


def test_an_errored_deployment_is_never_a_failure_and_never_rolls_back() -> None:
    sim = one_wave(on_failure=OnFailure.ROLLBACK)  # failure_tolerance 0: any failure would roll back
    sim.ok(Start("alex"))
    errored(sim, "a/e1", retryable=False, reason="terraform: binary not found")
    assert sim.env("a/e1").status is EnvStatus.ERRORED
    assert sim.state.current_wave.phase is WavePhase.DEPLOYING, "a/e2 is still in flight"
    sim.finish("a/e2")
    assert sim.state.current_wave.phase is WavePhase.ERRORED and sim.state.phase is RolloutPhase.HALTED
    assert "errored (not a failure of the change)" in sim.state.reason and "binary not found" in sim.state.reason
    assert not sim.deployments, "nothing rolled back"
    rerun = sim.ok(Rerun("alex", only_failed=True))  # fixed: a human reruns what errored
    assert [str(a.env) for a in rerun.actions if isinstance(a, StartDeployment)] == ["a/e1"]
    sim.finish("a/e1")
    assert sim.state.phase is RolloutPhase.COMPLETED


def test_a_transient_error_is_retried_after_a_growing_back_off_then_left_to_a_human() -> None:
    sim = one_wave(on_failure=OnFailure.ROLLBACK)
    sim.ok(Start("alex"))
    sim.finish("a/e2")
    retry = errored(sim, "a/e1", retryable=True)
    (wake,) = retry.actions
    assert isinstance(wake, WakeAt) and wake.when == sim.now + timedelta(seconds=5)
    assert sim.env("a/e1").status is EnvStatus.PENDING and "retry 1 of 8" in sim.env("a/e1").reason
    assert outstanding(sim.state) == (wake,), "a resumed engine keeps the back-off"
    assert sim.send(Tick(), seconds=1).actions == (), "not before the back-off ends"
    again = sim.send(Tick(), seconds=5)
    (redo,) = again.actions
    assert isinstance(redo, StartDeployment) and redo.key == "r1:a/e1:deploy-2"
    delays = []
    for _ in range(7):
        wake = errored(sim, "a/e1", retryable=True).actions[0]
        assert isinstance(wake, WakeAt)
        delays.append((wake.when - sim.now).total_seconds())
        sim.send(Tick(), seconds=delays[-1])
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    errored(sim, "a/e1", retryable=True)
    assert sim.env("a/e1").status is EnvStatus.ERRORED and "gave up after 8 retries" in sim.env("a/e1").reason
    assert sim.state.phase is RolloutPhase.HALTED and sim.state.current_wave.phase is WavePhase.ERRORED


def test_failures_within_tolerance_let_the_wave_pass() -> None:
    sim = one_wave(failure_tolerance=Tolerance(percent=50))
    sim.ok(Start("alex"))
    sim.finish("a/e1", succeeded=False)
    sim.finish("a/e2")
    assert sim.state.phase is RolloutPhase.COMPLETED  # 1 of 2 failed is within 50 %
    assert sim.versions() == {"a/e1": "1.0.0", "a/e2": "2.0.0"}


def test_rerun_only_failed_keeps_what_succeeded() -> None:
    sim = one_wave()
    sim.ok(Start("alex"))
    sim.finish("a/e1", succeeded=False)
    sim.finish("a/e2")
    assert sim.state.phase is RolloutPhase.HALTED
    rerun = sim.ok(Rerun("alex", only_failed=True))
    assert [str(a.env) for a in rerun.actions if isinstance(a, StartDeployment)] == ["a/e1"]
    assert sim.env("a/e2").status is EnvStatus.SUCCEEDED
    assert sim.send(Rerun("alex", only_failed=True)).refused is not None  # the wave is running again
    sim.finish("a/e1")
    assert sim.state.phase is RolloutPhase.COMPLETED


def test_empty_waves_pass_through() -> None:
    plan = RolloutPlan("p", (wave("ephemeral"), wave("staging", gates=(ApprovalGate("approver"),))))
    sim = Sim(rollout(plan, [["a/e1"], []], {"a/e1": "1.0.0"}))
    sim.ok(Start("alex"))
    sim.finish("a/e1")
    done = sim.ok(Promote("alex"))
    assert sim.state.phase is RolloutPhase.COMPLETED
    assert done.actions == (Finalize("r1:finalize:2.0.0", "postgres", "2.0.0"),)


def test_stale_observations_are_ignored() -> None:
    sim = two_waves()
    start = sim.ok(Start("alex"))
    first = start.actions[0]
    assert isinstance(first, StartDeployment)
    assert sim.send(DeploymentStarted(first.key, first.env, "dep-1")).refused is None
    assert sim.env(str(first.env)).deployment_id == "dep-1"
    sim.finish(str(first.env))
    again = decide(sim.state, done(first.key, first.env, "dep-1", False), sim.now)
    assert again.refused is not None and again.state is sim.state
    gate = decide(sim.state, GateSampled("r1:wave-1:run-1:gate-0:round-0", 1, 0, 0, ()), sim.now)
    assert gate.refused is not None


def test_outstanding_lists_what_a_resumed_engine_redoes() -> None:
    sim = one_wave(gates=(BakeGate(60), PrometheusGate("q", max=1, count=2, interval_seconds=30)))
    start = sim.ok(Start("alex"))
    assert outstanding(sim.state) == start.actions
    sim.finish_all()
    assert outstanding(sim.state) == (sim.wakes[-1],)
    baked = sim.send(Tick(), seconds=60)
    (first,) = baked.actions
    assert isinstance(first, SampleGate) and (first.gate_index, first.round) == (1, 0)
    assert outstanding(sim.state) == (first,)
    assert sim.send(Tick()).actions == (first,)  # a tick asks again, with the same key
    answered = sim.send(round_of(sim.state, first, Verdict.PASSED))
    (second,) = answered.actions  # the next round, an interval after the first was asked for
    assert isinstance(second, SampleGate) and second.round == 1
    assert second.not_before == first.not_before + timedelta(seconds=30)
    assert outstanding(sim.state) == (second,), "a resumed engine continues with the next round"
    sim.answer_gate(Verdict.PASSED)
    assert outstanding(sim.state) == (Finalize("r1:finalize:2.0.0", "postgres", "2.0.0"),)


def test_state_round_trips_through_the_codec() -> None:
    sim = Sim(rollout(STORY_PLAN, STORY_ENVS, STORY_PREVIOUS))
    sim.ok(Start("alex"))
    sim.finish_all()
    sim.answer_gate(Verdict.FAILED)
    data = json.loads(json.dumps(encode(sim.state)))
    assert decode_as(RolloutState, data) == sim.state


def test_new_rollout_rejects_membership_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="membership has 1 waves"):
        rollout(TWO_WAVES, [["a/e1"]], {"a/e1": "1.0.0"})
    with pytest.raises(ValueError, match="no previous version"):
        rollout(TWO_WAVES, [["a/e1"], []], {})
    with pytest.raises(ValueError, match="more than one wave"):
        rollout(TWO_WAVES, [["a/e1"], ["a/e1"]], {"a/e1": "1.0.0"})


# -- every (phase, command) pair ------------------------------------------------------------------

HALT_PLAN = RolloutPlan(
    "halt", (wave("ephemeral", max_parallel=3), wave("production", gates=(ApprovalGate("approver"),)))
)
ROLLBACK_PLAN = RolloutPlan(
    "rollback",
    (wave("ephemeral", max_parallel=3, on_failure=OnFailure.ROLLBACK), HALT_PLAN.waves[1]),
)


def state_in(phase: RolloutPhase) -> RolloutState:
    """A representative rollout in `phase`, with nothing in flight unless the phase needs it."""
    sim = two_waves(ROLLBACK_PLAN if phase is RolloutPhase.FAILED else HALT_PLAN)
    if phase is RolloutPhase.PENDING:
        return sim.state
    sim.ok(Start("alex"))
    if phase in (RolloutPhase.RUNNING, RolloutPhase.PAUSED, RolloutPhase.ABORTED):
        if phase is not RolloutPhase.RUNNING:
            sim.ok(Pause("alex") if phase is RolloutPhase.PAUSED else Abort("alex"))
        return sim.state
    sim.finish_all(succeeded=phase not in (RolloutPhase.HALTED, RolloutPhase.FAILED))
    sim.finish_all()  # the rollbacks, if any
    if phase is RolloutPhase.AWAITING_APPROVAL:
        sim.ok(Promote("alex"))
    if phase is RolloutPhase.COMPLETED:
        sim.ok(Promote("alex"))
        sim.ok(Approve("bob", roles=APPROVER))
        sim.finish_all()
    return sim.state


REPRESENTATIVE: dict[type[Command], Command] = {
    Start: Start("alex"),
    Promote: Promote("alex"),
    Approve: Approve("bob", override=True, roles=APPROVER),
    Pause: Pause("alex"),
    Resume: Resume("alex"),
    Abort: Abort("alex"),
    Rollback: Rollback("alex"),
    Retarget: Retarget("alex", "2.0.1"),
    Rerun: Rerun("alex", wave=1),
}


def test_the_table_covers_every_phase_and_every_command_is_representable() -> None:
    assert set(ALLOWED) == set(RolloutPhase)
    assert set(REPRESENTATIVE) == set(COMMANDS)


@pytest.mark.parametrize("phase", list(RolloutPhase))
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__)
def test_every_phase_command_pair_is_handled_or_refused(phase: RolloutPhase, command: type[Command]) -> None:
    state = state_in(phase)
    assert state.phase is phase
    decision = decide(state, REPRESENTATIVE[command], T0 + timedelta(hours=1))
    if command in ALLOWED[phase]:
        assert decision.refused is None, decision.refused
        again = decide(decision.state, REPRESENTATIVE[command], T0 + timedelta(hours=1))
        assert again.state == decision.state and again.actions == ()
    else:
        assert decision.refused is not None and f"it is {phase}" in decision.refused
        assert decision.state is state and decision.actions == () and decision.log == ()


def test_observations_fit_every_phase() -> None:
    for phase in RolloutPhase:
        state = state_in(phase)
        decision = decide(state, Tick(), T0 + timedelta(hours=1))
        assert decision.refused is None
        assert decision.state.phase is phase


# -- properties -------------------------------------------------------------------------------------

ACTORS = ("alex", "bob", "carol")
GATES: tuple[Gate, ...] = (
    BakeGate(0),
    BakeGate(600),
    PrometheusGate("q", max=0.5, count=2),
    ApprovalGate("approver"),
    ApprovalGate("approver", four_eyes=True),
    ApprovalGate("security"),
)


@st.composite
def scenarios(draw: st.DrawFn) -> RolloutState:
    waves, membership = [], []
    for n in range(draw(st.integers(1, 3))):
        waves.append(
            Wave(
                f"w{n}",
                Selector(),
                max_parallel=draw(st.integers(1, 3)),
                failure_tolerance=draw(st.sampled_from((Tolerance(0), Tolerance(1), Tolerance(percent=50)))),
                gates=tuple(draw(st.lists(st.sampled_from(GATES), max_size=2, unique=True))),
                on_failure=draw(st.sampled_from(OnFailure)),
                auto_promote=draw(st.booleans()),
            )
        )
        membership.append([f"p{n}/e{i}" for i in range(draw(st.integers(0, 4)))])
    previous = {e: draw(st.sampled_from(("1.0.0", "1.1.0"))) for refs in membership for e in refs}
    return rollout(RolloutPlan("random", tuple(waves)), membership, previous)


commands = st.one_of(  # abort has a rule of its own, so that few runs end early
    st.builds(Start, st.sampled_from(ACTORS)),
    st.builds(Promote, st.sampled_from(ACTORS)),
    st.builds(
        Approve,
        st.sampled_from(ACTORS),
        st.booleans(),
        st.sampled_from((frozenset(), APPROVER, frozenset({"approver", "security"}))),
    ),
    st.builds(Pause, st.sampled_from(ACTORS)),
    st.builds(Resume, st.sampled_from(ACTORS)),
    st.builds(Rollback, st.sampled_from(ACTORS), st.sampled_from((None, 1, 2, 3))),
    st.builds(Retarget, st.sampled_from(ACTORS), st.sampled_from(("2.0.0", "2.0.1", "2.0.2"))),
    st.builds(Rerun, st.sampled_from(ACTORS), st.sampled_from((None, 1, 2, 3)), st.booleans()),
)


class RolloutRules(RuleBasedStateMachine):
    """Random commands and observations; every decision is checked against the machine's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.sim: Sim
        self.previous: dict[EnvRef, str] = {}
        self.changed: set[EnvRef] = set()  # deploys started and not rolled back since
        self.used_keys: set[str] = set()
        self.run_of: dict[str, tuple[int, int]] = {}  # deployment key -> (wave, run) it started in
        self.failures: Counter[tuple[int, int]] = Counter()
        self.aborted = False

    @initialize(state=scenarios(), start=st.sampled_from((True, True, True, True, False)))
    def setup(self, state: RolloutState, start: bool) -> None:
        self.sim = Sim(state)
        self.previous = {e.env: e.previous_version for e in state.envs}
        if start:
            self.apply(Start("alex"))

    @rule(command=commands)
    def command(self, command: Command) -> None:
        self.apply(command)

    @rule()
    def what_a_human_would_do_next(self) -> None:
        """Promote, approve (as someone allowed to) or resume: keeps random runs moving forward."""
        nudge: dict[RolloutPhase, Command] = {
            RolloutPhase.AWAITING_PROMOTION: Promote("alex"),
            RolloutPhase.AWAITING_APPROVAL: Approve("bob", roles=frozenset({"approver", "security"})),
            RolloutPhase.PAUSED: Resume("alex"),
            RolloutPhase.FAILED: Rerun("alex"),
        }
        command = nudge.get(self.sim.state.phase)
        if command is not None:
            self.apply(command)

    @rule(roll=st.integers(0, 9))
    def abort_now_and_then(self, roll: int) -> None:
        if roll == 0:
            self.apply(Abort("carol"))

    @rule(data=st.data(), succeeded=st.sampled_from((True, True, True, False)), report=st.booleans())
    def finish_deployment(self, data: st.DataObject, succeeded: bool, report: bool) -> None:
        if not self.sim.deployments:
            self.apply(Tick())
            return
        key = data.draw(st.sampled_from(sorted(self.sim.deployments)))
        action = self.sim.deployments[key]
        if report:
            self.apply(DeploymentStarted(key, action.env, f"dep-{key}"))
        self.apply(done(key, action.env, f"dep-{key}", succeeded, "" if succeeded else "boom"))

    @rule(
        data=st.data(),
        retryable=st.booleans(),
        status=st.sampled_from((DeploymentStatus.ERRORED, DeploymentStatus.CANCELLED)),
    )
    def deployment_errors(self, data: st.DataObject, retryable: bool, status: DeploymentStatus) -> None:
        """Something technical prevented a deployment: never a failure, never a reason to roll back."""
        if not self.sim.deployments:
            self.apply(Tick(), 300)  # back-offs run out
            return
        key = data.draw(st.sampled_from(sorted(self.sim.deployments)))
        action = self.sim.deployments[key]
        self.apply(DeploymentFinished(key, action.env, f"dep-{key}", status, "environment busy", retryable))

    @rule(data=st.data(), result=st.sampled_from((Verdict.PASSED,) * 3 + tuple(Verdict)))
    def answer_gate(self, data: st.DataObject, result: Verdict) -> None:
        if not self.sim.gates:
            self.apply(Tick(), 600)
            return
        gate = self.sim.gates[data.draw(st.sampled_from(sorted(self.sim.gates)))]  # may be stale
        decision = self.apply(round_of(self.sim.state, gate, result))
        if decision.refused is not None:
            del self.sim.gates[gate.key]

    @rule(data=st.data())
    def stale_finish(self, data: st.DataObject) -> None:
        stale = sorted(self.used_keys - set(self.sim.deployments))
        if stale:
            key = data.draw(st.sampled_from(stale))
            env = ref(key.split(":")[1])
            decision = decide(self.sim.state, done(key, env, "late", True), self.sim.now)
            assert decision.refused is not None and decision.state is self.sim.state

    # -- the checks ------------------------------------------------------------------------------

    def apply(self, event: Event, seconds: float = 1) -> Decision:
        before = self.sim.state
        finished = self.sim.deployments.get(event.key) if isinstance(event, DeploymentFinished) else None
        decision = self.sim.send(event, seconds)
        if decision.refused is not None:
            assert decision.state is before and decision.actions == () and decision.log == ()
            return decision
        if isinstance(event, COMMANDS):
            self.check_idempotent(event, decision)
        if isinstance(event, Abort):
            self.aborted = True
        if finished is not None and isinstance(event, DeploymentFinished):
            self.check_finished(event, finished)
        for action in decision.actions:
            self.check_action(before, event, decision.state, action)
        self.check_waves(before, event, decision.state)
        return decision

    def check_idempotent(self, command: Command, decision: Decision) -> None:
        again = decide(decision.state, command, self.sim.now)
        assert again.state == decision.state, f"{command} twice differs from once"
        assert again.actions == ()

    def check_finished(self, event: DeploymentFinished, action: StartDeployment) -> None:
        env = self.sim.state.env(event.env)
        assert env is not None
        if action.kind is DeploymentKind.ROLLBACK and event.succeeded:
            self.changed.discard(event.env)
            assert env.version == self.previous[event.env] and env.status is EnvStatus.ROLLED_BACK
        elif event.succeeded:
            assert env.version == action.version  # retarget never changes an in-flight deployment
        elif action.kind is DeploymentKind.DEPLOY and event.status is DeploymentStatus.FAILED:
            self.failures[self.run_of[event.key]] += 1
        elif event.status is not DeploymentStatus.FAILED:
            assert env.status is not EnvStatus.FAILED, "errored is never failed"

    def check_action(self, before: RolloutState, event: Event, after: RolloutState, action: Action) -> None:
        assert not self.aborted or isinstance(action, WakeAt), "nothing new starts after abort"
        if isinstance(action, StartDeployment):
            assert action.key not in self.used_keys
            self.used_keys.add(action.key)
            assert before.phase is not RolloutPhase.PAUSED or isinstance(event, Resume | Rollback)
            env = after.env(action.env)
            assert env is not None
            self.run_of[action.key] = (env.wave, after.wave(env.wave).run)
            if action.kind is DeploymentKind.DEPLOY:
                self.check_deploy(after, env.wave, action)
            else:
                self.check_rollback(after, env.wave, action)
        elif isinstance(action, SampleGate):
            assert after.phase is not RolloutPhase.PAUSED
            assert after.wave(action.wave).phase is WavePhase.VERIFYING
            assert all(a.env not in after.wave(action.wave).envs for a in self.sim.deployments.values())
        elif isinstance(action, Finalize):
            assert after.phase is RolloutPhase.COMPLETED and len(self.sim.finalized) == 1
            assert all(w.phase is WavePhase.SUCCEEDED for w in after.waves)
            assert action.version == after.version

    def check_deploy(self, after: RolloutState, n: int, action: StartDeployment) -> None:
        assert all(after.wave(j).phase is WavePhase.SUCCEEDED for j in range(1, n)), "earlier wave not done"
        assert action.version == after.version
        spec = after.spec(n)
        assert self.failures[(n, after.wave(n).run)] <= spec.failure_tolerance.allowed(len(after.wave(n).envs))
        approvals = {a.gate_index: a.actor for a in after.wave(n).approvals}
        for index, gate in approval_gates(spec):
            assert index in approvals, "deployed before approval"
            assert not gate.four_eyes or approvals[index] != after.started_by
        self.changed.add(action.env)

    def check_rollback(self, after: RolloutState, n: int, action: StartDeployment) -> None:
        assert action.env in self.changed, "rolled back an environment this rollout did not change"
        assert action.version == self.previous[action.env]
        assert after.wave(n).phase is WavePhase.ROLLING_BACK

    def check_waves(self, before: RolloutState, event: Event, after: RolloutState) -> None:
        for w in after.waves:
            spec = after.spec(w.number)
            if w.phase in (WavePhase.AWAITING_PROMOTION, WavePhase.SUCCEEDED) and w.envs and not w.overridden_by:
                results = {r.gate_index: r.verdict for r in w.gates}
                assert all(results.get(i) is Verdict.PASSED for i in exit_gate_indexes(spec))
            was = before.wave(w.number).phase
            if w.phase is WavePhase.SUCCEEDED and was is not WavePhase.SUCCEEDED and w.envs:
                last = w.number == len(after.waves)
                assert isinstance(event, Promote) or spec.auto_promote or last or w.overridden_by
            stopped = w.phase in (WavePhase.ROLLING_BACK, WavePhase.FAILED)
            if was is WavePhase.DEPLOYING and stopped and not isinstance(event, Rollback):
                policy = spec.on_failure
                assert w.phase is (WavePhase.ROLLING_BACK if policy is OnFailure.ROLLBACK else WavePhase.FAILED)
                errored = isinstance(event, DeploymentFinished) and event.status is not DeploymentStatus.FAILED
                assert not errored, "an errored deployment stopped the wave as a failure"
        if isinstance(event, Promote):
            assert before.current_wave.phase is WavePhase.AWAITING_PROMOTION

    @invariant()
    def machine_and_engine_agree(self) -> None:
        state = self.sim.state
        assert {e.key for e in state.envs if e.key} == set(self.sim.deployments)
        for n in range(1, len(state.waves) + 1):
            in_flight = sum(1 for a in self.sim.deployments.values() if self.sim.env(str(a.env)).wave == n)
            assert in_flight <= max(state.spec(n).max_parallel, 1)

    @invariant()
    def failures_beyond_tolerance_stop_the_wave(self) -> None:
        state = self.sim.state
        wave = state.current_wave
        if state.phase in (RolloutPhase.PAUSED, RolloutPhase.ABORTED) or wave.phase is not WavePhase.DEPLOYING:
            return
        allowed = state.spec(wave.number).failure_tolerance.allowed(len(wave.envs))
        assert self.failures[(wave.number, wave.run)] <= allowed

    @invariant()
    def completed_means_finalized_once(self) -> None:
        assert len(self.sim.finalized) == (1 if self.sim.state.phase is RolloutPhase.COMPLETED else 0)

    @invariant()
    def state_round_trips(self) -> None:
        state = self.sim.state
        assert decode_as(RolloutState, json.loads(json.dumps(encode(state)))) == state


RolloutRules.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_rollout_rules = RolloutRules.TestCase


# -- batches of observations (what the engine feeds each turn) -----------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    outcomes=st.lists(st.booleans(), min_size=6, max_size=6),
    max_parallel=st.integers(1, 6),
    tolerance=st.integers(0, 3),
)
def test_a_batch_of_results_decides_like_one_result_at_a_time(
    outcomes: list[bool], max_parallel: int, tolerance: int
) -> None:
    """`decide_observations` settles once per batch and ends the wave where per-event `decide` ends it."""
    plan = RolloutPlan(
        "p",
        (
            wave(
                "ephemeral",
                max_parallel=max_parallel,
                failure_tolerance=Tolerance(tolerance),
                on_failure=OnFailure.ROLLBACK,
            ),
        ),
    )
    envs = [f"shop/e{i}" for i in range(6)]
    one = Sim(rollout(plan, [envs], dict.fromkeys(envs, "1.0.0")))
    one.ok(Start("alex"))
    batched_state = one.state
    pending_batch = dict(one.deployments)
    result = dict(zip(envs, outcomes, strict=True))
    # One at a time.
    while one.deployments:
        action = next(iter(one.deployments.values()))
        one.finish(str(action.env), result[str(action.env)] or action.kind is DeploymentKind.ROLLBACK)
    # In batches: everything in flight finishes together, then whatever that started, and so on.
    while pending_batch:
        events = [
            done(a.key, a.env, f"dep-{a.key}", result[str(a.env)] or a.kind is DeploymentKind.ROLLBACK)
            for a in pending_batch.values()
        ]
        decision = decide_observations(batched_state, events, T0 + timedelta(minutes=1))
        assert decision.refused is None
        batched_state = decision.state
        pending_batch = {a.key: a for a in decision.actions if isinstance(a, StartDeployment)}
    assert batched_state.phase == one.state.phase
    assert batched_state.current_wave.phase == one.state.current_wave.phase
    # Results that arrive together are settled together, so a failure among them stops new starts before
    # a slot they freed is refilled: a batch never touches an environment that one-at-a-time left alone.
    touched = {str(e.env) for e in batched_state.envs if e.attempts}
    assert touched <= {str(e.env) for e in one.state.envs if e.attempts}
    for env in batched_state.envs:
        assert env.version == ("2.0.0" if env.status is EnvStatus.SUCCEEDED else "1.0.0"), env


def test_four_eyes_excludes_whoever_chose_what_is_deployed_the_starter_and_the_retargeter() -> None:
    plan = RolloutPlan("p", (wave("production", gates=(ApprovalGate("approver", four_eyes=True),)),))
    sim = Sim(rollout(plan, [["a/prod"]], {"a/prod": "1.0.0"}))
    sim.ok(Start("alex"))
    sim.ok(Retarget("bob", "2.0.1"))
    refused = sim.send(Approve("bob", roles=APPROVER)).refused
    assert refused == (
        "four-eyes: wave 1 must be approved by someone other than bob, who last retargeted it (to 2.0.1): "
        "whoever chose what is deployed cannot approve it"
    )
    assert "who started the rollout" in (sim.send(Approve("alex", roles=APPROVER)).refused or "")
    sim.ok(Approve("carol", roles=APPROVER))
    assert [str(a.env) for a in sim.deployments.values()] == ["a/prod"]
