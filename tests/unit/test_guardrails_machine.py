"""The rollout state machine's guardrails: freezes and change windows hold a wave (a Hypothesis state machine
checks that no deploy ever starts in a frozen scope or outside a window), alerts stop the line, a failed gate
marks the version defective when the plan says so, and landed and compare gates drive their rounds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from estate.domain.alerts import Alert, AlertEffect, AlertStatus
from estate.domain.change_windows import ChangeWindow, is_open
from estate.domain.deployments import DeploymentKind
from estate.domain.freezes import Freeze, freeze_hold
from estate.domain.gate_eval import Sample, SampleStatus, Verdict
from estate.domain.plans import CompareGate, OnFailure, PrometheusGate, RolloutPlan, Wave
from estate.domain.rollout import decide, decide_observations, outstanding
from estate.domain.rollout_events import (
    AlertFired,
    Event,
    FreezesChanged,
    GateSampled,
    MarkDefective,
    Promote,
    Rerun,
    Rollback,
    SampleGate,
    Start,
    StartDeployment,
    Tick,
    WakeAt,
)
from estate.domain.rollout_state import RolloutPhase, RolloutState, WavePhase, new_rollout
from estate.domain.selectors import Selector
from estate.store.codec import decode_as, encode
from tests.unit.test_rollout_machine import Sim, done, ref

T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)  # a Monday


def rollout(plan: RolloutPlan, membership: list[list[tuple[str, str]]], freezes: tuple[Freeze, ...] = ()) -> Sim:
    """A rollout of `plan` over `membership` (per wave: (project/env, env type)), every env on 1.0.0."""
    state = new_rollout(
        rollout_id="r1",
        module="postgres",
        version="2.0.0",
        plan=plan,
        membership=[[ref(e) for e, _ in wave] for wave in membership],
        previous_versions={ref(e): "1.0.0" for wave in membership for e, _ in wave},
        started_by="alex",
        now=T0,
        env_types={ref(e): t for wave in membership for e, t in wave},
        freezes=freezes,
    )
    sim = Sim(state)
    sim.now = T0
    return sim


def starts(decision_actions: tuple[object, ...]) -> list[str]:
    return [str(a.env) for a in decision_actions if isinstance(a, StartDeployment) and a.kind is DeploymentKind.DEPLOY]


PROD_FREEZE = Freeze(1, "incident 4711", "root", T0, "production", T0 + timedelta(hours=2))
MIXED = [[("a/eph", "ephemeral"), ("a/prod", "production")], [("b/prod", "production")]]
MIXED_PLAN = RolloutPlan("p", (Wave("one", Selector(), max_parallel=5), Wave("two", Selector())))


# -- freezes -----------------------------------------------------------------------------------------


def test_a_freeze_holds_the_frozen_env_type_says_why_and_ends_by_itself() -> None:
    sim = rollout(MIXED_PLAN, MIXED, (PROD_FREEZE,))
    started = sim.ok(Start("alex"))
    assert starts(started.actions) == ["a/eph"], "only the unfrozen environment starts"
    wave = sim.state.wave(1)
    assert "env type production frozen by root" in wave.hold and "incident 4711" in wave.hold
    assert wave.hold_until == PROD_FREEZE.until
    assert WakeAt(f"r1:wave-1:run-1:hold-{PROD_FREEZE.until.isoformat()}", PROD_FREEZE.until) in started.actions
    assert "wave 1 deploying -> held" in sim.log[-1] or any("-> held" in line for line in sim.log)
    sim.finish("a/eph")
    assert sim.state.phase is RolloutPhase.RUNNING and sim.state.current_wave.phase is WavePhase.DEPLOYING
    assert starts(sim.send(Tick(), seconds=3600).actions) == []
    later = sim.send(Tick(), seconds=3600)  # the freeze ended
    assert starts(later.actions) == ["a/prod"] and sim.state.wave(1).hold == ""
    assert WakeAt(f"r1:wave-1:run-1:hold-{PROD_FREEZE.until.isoformat()}", PROD_FREEZE.until) not in outstanding(
        sim.state
    )


def test_lifting_a_freeze_releases_the_wave_and_rollbacks_are_never_held() -> None:
    plan = RolloutPlan("p", (Wave("one", Selector(), max_parallel=5, on_failure=OnFailure.ROLLBACK),))
    sim = rollout(plan, [MIXED[0]])
    sim.ok(Start("alex"))
    everything = Freeze(2, "code freeze", "root", T0, None, None)
    assert sim.send(FreezesChanged((everything,))).actions == ()
    failed = sim.finish("a/eph", succeeded=False)  # the wave rolls back, frozen or not
    assert [(str(a.env), a.kind) for a in failed.actions if isinstance(a, StartDeployment)] == [
        ("a/eph", DeploymentKind.ROLLBACK)
    ]
    sim.finish_all()
    assert sim.state.wave(1).phase is WavePhase.ROLLED_BACK


def test_a_wave_waits_for_its_change_window_and_says_until_when() -> None:
    window = ChangeWindow(frozenset({0}), time(12), time(13), "UTC")  # Mondays 12:00-13:00
    plan = RolloutPlan("p", (Wave("one", Selector(), change_windows=(window,)),))
    sim = rollout(plan, [[("a/eph", "ephemeral")]])
    started = sim.ok(Start("alex"))
    assert starts(started.actions) == []
    opens = datetime(2027, 1, 4, 12, tzinfo=UTC)
    assert sim.state.wave(1).hold_until == opens and "the next opens 2027-01-04 12:00:00 UTC" in sim.state.wave(1).hold
    assert any(isinstance(a, WakeAt) and a.when == opens for a in started.actions)
    assert starts(sim.send(Tick(), seconds=(opens - sim.now).total_seconds()).actions) == ["a/eph"]


# -- the property: no deploy starts in a frozen scope or outside a window ------------------------------

TYPES = ("ephemeral", "staging", "production")
window_strategy = st.builds(
    ChangeWindow,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=st.sampled_from([time(h) for h in (0, 6, 9, 12, 18, 22)]),
    end=st.sampled_from([time(h) for h in (1, 8, 12, 17, 20, 23)]),
    timezone=st.sampled_from(("UTC", "Europe/Berlin", "America/New_York")),
)
freeze_strategy = st.builds(
    Freeze,
    id=st.integers(1, 5),
    reason=st.just("r"),
    created_by=st.just("root"),
    created_at=st.just(T0),
    env_type=st.sampled_from((None, *TYPES)),
    until=st.one_of(st.none(), st.integers(1, 72).map(lambda h: T0 + timedelta(hours=h))),
)


class HeldDeploys(RuleBasedStateMachine):
    """Random waves, windows, freezes, finishes, commands and time; every deploy the machine starts is allowed."""

    @initialize(
        waves=st.lists(
            st.tuples(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3), st.lists(window_strategy, max_size=2)),
            min_size=1,
            max_size=3,
        ),
        freezes=st.lists(freeze_strategy, max_size=2),
    )
    def setup(self, waves: list[tuple[list[str], list[ChangeWindow]]], freezes: list[Freeze]) -> None:
        plan = RolloutPlan(
            "p",
            tuple(
                Wave(f"w{n}", Selector(), max_parallel=2, change_windows=tuple(w), on_failure=OnFailure.ROLLBACK)
                for n, (_, w) in enumerate(waves)
            ),
        )
        membership = [[(f"p/w{n}-{i}", t) for i, t in enumerate(types)] for n, (types, _) in enumerate(waves)]
        self.sim = rollout(plan, membership, tuple(freezes))
        self.check(Start("alex"), 0)

    def check(self, event: Event, seconds: float) -> None:
        before = self.sim.state
        decision = self.sim.send(event, seconds)
        now = self.sim.now
        for action in decision.actions:
            if isinstance(action, StartDeployment) and action.kind is DeploymentKind.DEPLOY:
                env = decision.state.env(action.env)
                assert env is not None
                assert freeze_hold(decision.state.freezes, env.env_type, now) is None, f"{env.env} started frozen"
                windows = decision.state.spec(env.wave).change_windows
                assert is_open(windows, now), f"{env.env} started outside {windows} at {now}"
                assert before.env(action.env) is not None

    @rule(hours=st.floats(0, 30))
    def time_passes(self, hours: float) -> None:
        self.check(Tick(), hours * 3600)

    @rule(freezes=st.lists(freeze_strategy, max_size=2), hours=st.floats(0, 5))
    def freezes_change(self, freezes: list[Freeze], hours: float) -> None:
        self.check(FreezesChanged(tuple(freezes)), hours * 3600)

    @precondition(lambda self: bool(self.sim.deployments))
    @rule(data=st.data(), succeeded=st.booleans())
    def a_deployment_ends(self, data: st.DataObject, succeeded: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.sim.deployments)))
        action = self.sim.deployments[key]
        ok = succeeded or action.kind is DeploymentKind.ROLLBACK
        self.check(done(key, action.env, f"d-{key}", ok), 60)

    @rule(command=st.sampled_from((Promote("alex"), Rerun("alex"), Rollback("alex"))))
    def a_human_acts(self, command: Promote | Rerun | Rollback) -> None:
        self.check(command, 60)

    @invariant()
    def a_held_wave_says_until_when(self) -> None:
        wave = self.sim.state.current_wave
        if wave.hold_until is not None:
            assert wave.hold and wave.phase is WavePhase.DEPLOYING

    @invariant()
    def the_state_round_trips_through_the_store_codec(self) -> None:
        state = self.sim.state  # windows, freezes and holds included
        assert decode_as(RolloutState, json.loads(json.dumps(encode(state)))) == state


TestHeldDeploys = HeldDeploys.TestCase
TestHeldDeploys.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)


# -- alerts ---------------------------------------------------------------------------------------------


def alert(env: str, name: str = "PgErrorsHigh", starts_at: datetime = T0) -> AlertFired:
    project, _, env_id = env.partition("/")
    labels = {"alertname": name, "project": project, "env": env_id, "severity": "critical"}
    found = Alert(name, AlertStatus.FIRING, labels, starts_at, "http://prometheus/graph?g0.expr=x", f"fp-{env}")
    return AlertFired(found, ref(env), "alertmanager")


TWO = [[("a/eph-1", "ephemeral"), ("a/eph-2", "ephemeral")], [("a/prod", "production")]]


def two_waves(on_failure: OnFailure = OnFailure.HALT, *, mark_defective: bool = False) -> Sim:
    plan = RolloutPlan(
        "p",
        (
            Wave("eph", Selector(), max_parallel=2, on_failure=on_failure, gates=(PrometheusGate("q", max=1),)),
            Wave("prod", Selector()),
        ),
        mark_defective_on_failure=mark_defective,
    )
    return rollout(plan, TWO)


def test_an_alert_in_the_current_wave_fails_it_and_is_kept_as_evidence() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    decision = sim.send(alert("a/eph-1"))
    assert decision.refused is None
    assert sim.state.phase is RolloutPhase.HALTED and sim.state.wave(1).phase is WavePhase.FAILED
    assert sim.state.reason == "alert PgErrorsHigh firing for a/eph-1"
    (kept,) = sim.state.wave(1).alerts
    assert kept.effect is AlertEffect.FAILED_WAVE and kept.alert.labels["severity"] == "critical"
    assert kept.alert.generator_url.startswith("http://prometheus/") and kept.alert.starts_at == T0
    assert not [a for a in decision.actions if isinstance(a, MarkDefective)], "the plan does not mark versions"
    assert sim.send(alert("a/eph-1")).log == (), "the same firing, notified again, does nothing more"
    assert decode_as(RolloutState, json.loads(json.dumps(encode(sim.state)))) == sim.state


def test_with_rollback_policy_the_wave_rolls_back_and_the_version_is_marked_defective() -> None:
    sim = two_waves(OnFailure.ROLLBACK, mark_defective=True)
    sim.ok(Start("alex"))
    sim.finish_all()
    assert sim.state.current_wave.phase is WavePhase.VERIFYING
    decision = sim.send(alert("a/eph-2"))
    assert sim.state.wave(1).phase is WavePhase.ROLLING_BACK
    assert {(str(a.env), a.kind) for a in decision.actions if isinstance(a, StartDeployment)} == {
        ("a/eph-1", DeploymentKind.ROLLBACK),
        ("a/eph-2", DeploymentKind.ROLLBACK),
    }
    (mark,) = [a for a in decision.actions if isinstance(a, MarkDefective)]
    assert (mark.module, mark.version) == ("postgres", "2.0.0")
    assert mark.reason == "failed alert PgErrorsHigh of wave 1 (eph) in rollout r1"
    late = [a for a in sim.gates.values()]
    if late:  # the gate round in flight is stale now
        assert sim.send(GateSampled(late[0].key, 1, 0, 0, ())).refused is not None


def test_an_alert_for_a_wave_already_deployed_pauses_the_rollout_and_one_not_reached_is_ignored() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    ignored = sim.send(alert("a/prod"))
    assert ignored.refused is not None and "has not deployed" in ignored.refused
    sim.finish_all()
    sim.send(
        GateSampled(next(iter(sim.gates)), 1, 0, 0, tuple(Sample.of(e, 0, "q", 0.5) for e in ("a/eph-1", "a/eph-2")))
    )
    sim.ok(Promote("alex"))
    assert sim.state.current == 2
    sim.send(alert("a/eph-1", starts_at=T0 + timedelta(minutes=5)))
    assert sim.state.phase is RolloutPhase.PAUSED
    assert sim.state.reason == "alert PgErrorsHigh firing for a/eph-1 (wave 1, already deployed): paused"
    assert sim.state.wave(1).alerts[-1].effect is AlertEffect.PAUSED
    assert sim.state.wave(2).phase is WavePhase.DEPLOYING, "in-flight work finishes; nothing new starts"


# -- landed and compare gates -----------------------------------------------------------------------


def test_a_landed_gate_samples_until_the_new_version_reports_then_judges_only_what_counts() -> None:
    gate = PrometheusGate("q", max=0.05, count=2, interval_seconds=10, landed="v", landed_timeout_seconds=60)
    plan = RolloutPlan("p", (Wave("eph", Selector(), gates=(gate,)),))
    sim = rollout(plan, [[("a/eph", "ephemeral")]])
    sim.ok(Start("alex"))
    sim.finish_all()
    for landed in (False, False, True, True):
        (action,) = sim.gates.values()
        assert action.windows and action.windows[0][1] >= 1, "the window starts when the deployment finished"
        sim.send(
            GateSampled(action.key, 1, 0, action.round, (Sample("a/eph", action.round, "q", (0.001,), landed=landed),))
        )
    record = sim.state.wave(1).record(0)
    assert record is not None and record.verdict is Verdict.PASSED
    assert record.judgement is not None
    statuses = [s.status for s in record.judgement.subjects[0].samples]
    assert statuses == [SampleStatus.NOT_LANDED, SampleStatus.NOT_LANDED, SampleStatus.OK, SampleStatus.OK]


def test_a_version_that_never_reports_makes_the_gate_inconclusive_never_a_pass() -> None:
    gate = PrometheusGate("q", max=0.05, count=2, interval_seconds=10, landed="v", landed_timeout_seconds=20)
    plan = RolloutPlan("p", (Wave("eph", Selector(), gates=(gate,)),))
    sim = rollout(plan, [[("a/eph", "ephemeral")]])
    sim.ok(Start("alex"))
    sim.finish_all()
    rounds = 0
    while sim.gates:
        (action,) = sim.gates.values()
        sim.send(
            GateSampled(action.key, 1, 0, action.round, (Sample("a/eph", action.round, "q", (0.001,), landed=False),))
        )
        rounds += 1
    assert rounds == 4, "count + landed_timeout / interval rounds"
    assert sim.state.wave(1).phase is WavePhase.INCONCLUSIVE
    record = sim.state.wave(1).record(0)
    assert record is not None and "did not report in time" in record.reason


def test_a_compare_gate_asks_for_its_baseline_among_environments_the_rollout_has_not_changed() -> None:
    gate = CompareGate("q", count=1, min_samples=1)
    plan = RolloutPlan("p", (Wave("canary", Selector(), gates=(gate,)), Wave("rest", Selector())))
    sim = rollout(plan, [[("a/eph-1", "ephemeral")], [("a/eph-2", "ephemeral"), ("a/prod", "production")]])
    sim.ok(Start("alex"))
    sim.finish_all()
    (action,) = sim.gates.values()
    assert isinstance(action, SampleGate) and action.candidates == (ref("a/eph-2"), ref("a/prod"))
    assert (action.module, action.version) == ("postgres", "2.0.0")
    samples = (Sample.of("a/eph-1", 0, "q", 0.25), Sample("a/eph-2", 0, "q", (0.001,), baseline=True))
    sim.send(GateSampled(action.key, 1, 0, 0, samples))
    record = sim.state.wave(1).record(0)
    assert record is not None and record.judgement is not None and record.judgement.comparison is not None
    assert record.verdict is Verdict.PASSED, "one sample each cannot show anything is worse"


def test_an_alert_for_a_wave_that_already_stopped_is_only_recorded() -> None:
    sim = two_waves()
    sim.ok(Start("alex"))
    halted = decide_observations(sim.state, [alert("a/eph-1"), Tick()], sim.now)  # as an engine turn batches them
    assert halted.state.phase is RolloutPhase.HALTED
    again = decide(halted.state, alert("a/eph-2", starts_at=T0 + timedelta(seconds=1)), sim.now)
    assert again.refused is None and again.state.wave(1).alerts[-1].effect is AlertEffect.RECORDED
    assert again.state.phase is RolloutPhase.HALTED and again.actions == ()


def test_alerts_for_a_wave_rolling_back_are_recorded_and_never_stall_the_rollback() -> None:
    sim = two_waves(OnFailure.ROLLBACK)
    sim.ok(Start("alex"))
    sim.finish_all()
    sim.send(alert("a/eph-1"))
    assert sim.state.wave(1).phase is WavePhase.ROLLING_BACK
    second = sim.send(alert("a/eph-2"))  # Alertmanager reports the other environment a moment later
    assert second.refused is None and sim.state.phase is RolloutPhase.RUNNING
    assert [a.effect for a in sim.state.wave(1).alerts] == [AlertEffect.FAILED_WAVE, AlertEffect.RECORDED]
    sim.finish_all()
    assert sim.state.phase is RolloutPhase.FAILED and sim.state.wave(1).phase is WavePhase.ROLLED_BACK
