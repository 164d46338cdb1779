"""The rollout engine on a real SQLite store with the fake runner: the story, failures, commands, resume."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from estate.config import load_estate
from estate.domain import rollout_events as ev
from estate.domain.ids import EnvRef
from estate.domain.model import Environment, ModuleVersion
from estate.domain.rollout_state import GateResult, RolloutState
from estate.domain.usage import module_usage
from estate.engine.driver import EngineConfig, LeaseHeld, RolloutEngine
from estate.engine.persistence import RolloutRepo
from estate.engine.service import RolloutService
from estate.engine.status import rollout_view
from estate.errors import ConflictError, InputError, NotFoundError, OperationFailed
from estate.store import Store
from estate.testing.fake_runner import FakeRunner
from tests.support.cli import EXAMPLE_ESTATE

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Clock:
    """Fake time: every reading moves it 1 ms; the engine's idle sleeps move it by what they wait."""

    def __init__(self) -> None:
        self.ticks = itertools.count()
        self.slept = 0.0

    def __call__(self) -> datetime:
        return T0 + timedelta(milliseconds=next(self.ticks), seconds=self.slept)

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The example estate with 2.0.0 and 2.0.1 published, on SQLite and on a throwaway PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'estate.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    opened = Store.open(url)
    estate = load_estate(EXAMPLE_ESTATE).estate
    opened.sync(estate, prune=False, force=False, dry_run=False, actor="alex", now=T0)
    for version in ("2.0.0", "2.0.1"):
        opened.publish(ModuleVersion("postgres", version, f"/srv/pg-{version}"), "alex", T0)
    yield opened
    opened.close()


class PassingGates:
    """Every Prometheus gate passes (the real sampler is tested against a real Prometheus elsewhere)."""

    def evaluate(self, state: RolloutState, action: ev.EvaluateGate) -> ev.GateEvaluated:
        return ev.GateEvaluated(action.key, action.wave, action.gate_index, GateResult.PASSED, {"reason": "fake"})


def _service(store: Store, runner: FakeRunner, clock: Clock) -> RolloutService:
    def config() -> EngineConfig:
        return EngineConfig(store, runner, clock, max_parallel=4, gates=PassingGates(), sleep=clock.sleep)

    return RolloutService(store, runner, config, now=clock, max_parallel=4)


def _versions(store: Store) -> dict[str, str]:
    return {str(b.env.ref): b.version or "" for b in module_usage(store.load_estate(), "postgres")}


def test_the_story_ends_with_every_environment_on_the_patch(store: Store) -> None:
    clock = Clock()
    runner = FakeRunner(clock, failing={EnvRef("checkout", "eph-2")}, fail_rollbacks=False)
    service = _service(store, runner, clock)
    rollout = service.start("postgres", "2.0.0", "standard", actor="alex", preflight=False).rollout_id
    state = service.drive(rollout)
    assert state is not None and str(state.phase) == "failed"  # on_failure: rollback in the ephemeral wave
    versions = _versions(store)
    assert all(versions[e] == "1.0.0" for e in versions), "wave 1 rolled back to each env's previous version"
    runner.failing.clear()
    service.submit(rollout, ev.Retarget("alex", "2.0.1"))
    service.command(rollout, ev.Rerun("alex", 1))
    assert {v for e, v in _versions(store).items() if "eph" in e} == {"2.0.1"}
    assert {v for e, v in _versions(store).items() if "eph" not in e} == {"1.0.0"}
    service.command(rollout, ev.Promote("alex"))
    service.command(rollout, ev.Promote("alex"))
    state = service.command(rollout, ev.Promote("alex"))
    assert state is not None and str(state.phase) == "awaiting_approval"
    with pytest.raises(OperationFailed, match="four-eyes"):
        service.command(rollout, ev.Approve("alex", roles=frozenset({"approver"})))
    state = service.command(rollout, ev.Approve("bob", roles=frozenset({"approver"})))
    assert state is not None and str(state.phase) == "completed"
    assert set(_versions(store).values()) == {"2.0.1"}
    rules = store.load_estate().rules
    assert [r.owner for r in rules] == ["config"], "pins folded into the global rule"


def test_refusals_and_bad_input(store: Store) -> None:
    clock = Clock()
    service = _service(store, FakeRunner(clock), clock)
    with pytest.raises(NotFoundError, match=r"no published version '9\.9\.9'"):
        service.start("postgres", "9.9.9", "standard", actor="alex", preflight=False)
    with pytest.raises(NotFoundError, match="unknown rollout plan"):
        service.start("postgres", "2.0.0", "nope", actor="alex", preflight=False)
    rollout = service.start("postgres", "2.0.0", "standard", actor="alex", preflight=False).rollout_id
    with pytest.raises(ConflictError, match=f"rollout {rollout} already owns module 'postgres'"):
        service.start("postgres", "2.0.1", "standard", actor="alex", preflight=False)
    service.drive(rollout)
    with pytest.raises(OperationFailed, match="there is no wave 7"):
        service.command(rollout, ev.Rollback("alex", 7))
    with pytest.raises(NotFoundError):
        service.submit("postgres-99", ev.Promote("alex"))


def test_uncovered_targets_are_an_error_unless_allowed(store: Store, tmp_path: Path) -> None:
    estate = load_estate(EXAMPLE_ESTATE).estate
    plan = estate.plans[0]
    narrow = plan.__class__("narrow", plan.waves[:2])
    store.sync(
        estate.__class__(**{**estate.__dict__, "plans": (plan, narrow)}),
        prune=False,
        force=False,
        dry_run=False,
        actor="alex",
        now=T0,
    )
    clock = Clock()
    service = _service(store, FakeRunner(clock), clock)
    with pytest.raises(InputError, match="no wave of the plan selects"):
        service.start("postgres", "2.0.0", "narrow", actor="alex", preflight=False)
    started = service.start("postgres", "2.0.0", "narrow", actor="alex", preflight=False, allow_uncovered=True)
    assert len(started.preview.uncovered) == 8


def test_a_second_engine_cannot_drive_a_leased_rollout(store: Store) -> None:
    clock = Clock()
    runner = FakeRunner(clock)
    service = _service(store, runner, clock)
    rollout = service.start("postgres", "2.0.0", "standard", actor="alex", preflight=False).rollout_id
    repo = RolloutRepo(store, rollout)
    assert repo.acquire("other-host:1", clock(), timedelta(seconds=60)) is None
    with pytest.raises(LeaseHeld, match="other-host:1"):
        RolloutEngine(EngineConfig(store, runner, clock, gates=PassingGates(), sleep=clock.sleep), rollout).run()
    command = service.submit(rollout, ev.Pause("alex"))
    assert service.drive(rollout) is None
    assert service.outcome(command, wait_seconds=0) is None, "queued for the engine that holds the lease"
    repo.release("other-host:1")
    assert service.drive(rollout) is not None
    assert service.outcome(command, wait_seconds=0) == "ok"


def test_a_resumed_engine_redoes_outstanding_actions_once(store: Store) -> None:
    """Persist-then-act: state saved with a deployment in flight, then the engine died before running it."""
    clock = Clock()
    runner = FakeRunner(clock)
    service = _service(store, runner, clock)
    rollout = service.start("postgres", "2.0.0", "standard", actor="alex", preflight=False).rollout_id

    class Dies(Exception):
        pass

    engine = RolloutEngine(EngineConfig(store, runner, clock, gates=PassingGates(), sleep=clock.sleep), rollout)
    perform = engine._perform

    def crash(state: object, actions: list[object], *rest: object) -> None:
        if actions:  # the first decision's actions: the state with them in flight is already saved
            raise Dies
        perform(state, actions, *rest)  # type: ignore[arg-type]

    engine._perform = crash  # type: ignore[method-assign]
    with pytest.raises(Dies):
        engine.run()
    repo = RolloutRepo(store, rollout)
    assert str(repo.state().phase) == "running"
    assert runner.runs == []
    repo.release(engine.cfg.holder)
    state = service.drive(rollout)
    assert state is not None and str(state.phase) == "awaiting_promotion"
    assert len(runner.runs) == 5, "each ephemeral environment deployed exactly once"


def test_membership_is_frozen_and_later_environments_show_as_not_covered(store: Store) -> None:
    clock = Clock()
    service = _service(store, FakeRunner(clock), clock)
    rollout = service.start("postgres", "2.0.0", "standard", actor="alex", preflight=False).rollout_id
    estate = store.load_estate()
    late = Environment("checkout", "eph-9", "ephemeral")
    store.sync(
        replace(
            estate,
            environments=(*estate.environments, late),
            rules=tuple(r for r in estate.rules if r.owner == "config"),
        ),
        prune=False,
        force=False,
        dry_run=False,
        actor="alex",
        now=clock(),
    )
    service.drive(rollout)
    view = rollout_view(store, rollout, clock())
    assert view["not_covered"] == ["checkout/eph-9"]
    assert "checkout/eph-9" not in {e["env"] for w in view["waves"] for e in w["envs"]}
    assert view["waves"][0]["phase"] == "awaiting_promotion" and len(view["waves"][0]["envs"]) == 5
