"""The rollout engine through the application layer, on a real store (SQLite and PostgreSQL) with the fake
runner: the story, refusals, errored deployments, leases, resume, and one host driving several rollouts."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from estate.app import App, Caller, Wiring, bootstrap
from estate.app.audit import AuditFilter
from estate.app.views.rollouts import EnvQuery
from estate.config import load_estate
from estate.domain.gate_eval import Sample, SamplingRound
from estate.domain.ids import EnvRef
from estate.domain.model import Environment, Module, ModuleVersion, Resource
from estate.domain.plans import BakeGate, CompareGate
from estate.domain.rules import ModuleRule
from estate.domain.usage import module_usage
from estate.engine.driver import RolloutDriver
from estate.engine.host import EngineHost
from estate.errors import ComponentError, ConflictError, InputError, NotFoundError, Refused
from estate.store import Store
from estate.store.deployments import DeploymentRepository
from estate.store.holders import heartbeat
from estate.store.rollouts import RolloutSession
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


ALEX, BOB = Caller("alex"), Caller("bob")


class PassingSampler:
    """Every sample sits inside its gate's bounds (the real sampler is tested against a real Prometheus)."""

    def sample(self, round: SamplingRound) -> list[Sample]:
        gate = round.gate
        landed = True if gate.landed else None
        if isinstance(gate, CompareGate):  # both cohorts alike: not worse
            cohorts = ((round.envs, False), (round.baseline, True))
            return [
                Sample(str(e.ref), round.round, "q", (0.001,), landed=landed, baseline=b)
                for envs, b in cohorts
                for e in envs
            ]
        value = gate.max if gate.max is not None else (gate.min or 0.0)
        subjects = [f"wave/{round.wave_name}"] if gate.scope == "wave" else [str(e.ref) for e in round.envs]
        return [Sample(s, round.round, "q", (value,), landed=landed) for s in subjects]


@dataclass
class Engine:
    """The application on `store`, with a fake clock and a fake runner that records its runs in the store."""

    app: App
    runner: FakeRunner
    clock: Clock


@pytest.fixture
def engine(store: Store, tmp_path: Path) -> Iterator[Engine]:
    clock = Clock()
    runner = FakeRunner(DeploymentRepository(store), clock)
    url = store.engine.url.render_as_string(hide_password=False)
    environ = {"ESTATE_HOME": str(tmp_path / "home"), "ESTATE_DATABASE_URL": url, "ESTATE_LEASE_TTL": "30"}
    wiring = Wiring(now=clock, sleep=clock.sleep, runner=lambda _s, _t: runner, sampler=PassingSampler())
    app = bootstrap(environ, wiring)
    yield Engine(app, runner, clock)
    app.close()


def _versions(store: Store) -> dict[str, str]:
    return {str(b.env.ref): b.version or "" for b in module_usage(store.load_estate(), "postgres")}


def test_the_story_ends_with_every_environment_on_the_patch(store: Store, engine: Engine) -> None:
    engine.runner.failing.add(EnvRef("checkout", "eph-2"))
    engine.runner.fail_rollbacks = False
    rollouts = engine.app.rollouts
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False).id
    assert rollouts.status(rollout).phase == "failed"  # on_failure: rollback in the ephemeral wave
    versions = _versions(store)
    assert all(versions[e] == "1.0.0" for e in versions), "wave 1 rolled back to each env's previous version"
    engine.runner.failing.clear()
    rollouts.retarget(ALEX, rollout, "2.0.1", preflight=False, follow=False)
    rollouts.rerun(ALEX, rollout, wave="1")
    assert {v for e, v in _versions(store).items() if "eph" in e} == {"2.0.1"}
    assert {v for e, v in _versions(store).items() if "eph" not in e} == {"1.0.0"}
    rollouts.promote(ALEX, rollout)
    rollouts.promote(ALEX, rollout)
    assert rollouts.promote(ALEX, rollout).phase == "awaiting_approval"
    with pytest.raises(Refused, match="four-eyes"):
        rollouts.approve(ALEX, rollout)
    assert rollouts.approve(BOB, rollout).phase == "completed"
    assert set(_versions(store).values()) == {"2.0.1"}
    assert [r.owner for r in store.load_estate().rules] == ["config"], "pins folded into the global rule"
    refused = engine.app.audit.entries(AuditFilter(targets=(f"rollout:{rollout}",), outcome="refused"))
    assert [(e.actor, e.action) for e in refused] == [("alex", "rollout approve")], "every attempt is audited"


def test_refusals_and_bad_input(engine: Engine) -> None:
    rollouts = engine.app.rollouts
    with pytest.raises(NotFoundError, match=r"no published version '9\.9\.9'"):
        rollouts.start(ALEX, "postgres", "9.9.9", "standard", preflight=False)
    with pytest.raises(NotFoundError, match="unknown rollout plan"):
        rollouts.start(ALEX, "postgres", "2.0.0", "nope", preflight=False)
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id
    with pytest.raises(ConflictError, match=f"rollout {rollout} already owns module 'postgres'"):
        rollouts.start(ALEX, "postgres", "2.0.1", "standard", preflight=False)
    with pytest.raises(InputError, match="no wave '7'"):
        rollouts.rollback(ALEX, rollout, wave="7")
    with pytest.raises(NotFoundError):
        rollouts.promote(ALEX, "postgres-99")
    with pytest.raises(Refused, match="cannot promote rollout postgres-1: it is running"):
        rollouts.promote(ALEX, rollout, follow=False)


def test_uncovered_targets_are_an_error_unless_allowed(store: Store, engine: Engine) -> None:
    estate = load_estate(EXAMPLE_ESTATE).estate
    plan = estate.plans[0]
    narrow = plan.__class__("narrow", plan.waves[:2])
    store.sync(replace(estate, plans=(plan, narrow)), prune=False, force=False, dry_run=False, actor="alex", now=T0)
    rollouts = engine.app.rollouts
    with pytest.raises(InputError, match="no wave of the plan selects"):
        rollouts.start(ALEX, "postgres", "2.0.0", "narrow", preflight=False)
    started = rollouts.start(ALEX, "postgres", "2.0.0", "narrow", preflight=False, allow_uncovered=True, follow=False)
    assert len(started.preview.uncovered) == 8


def test_a_second_engine_cannot_drive_a_leased_rollout(store: Store, engine: Engine) -> None:
    rollouts = engine.app.rollouts
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id
    session = RolloutSession(store, rollout)
    assert session.acquire("other-host:1", engine.clock(), timedelta(seconds=600)) is None
    heartbeat(store, "other-host:1", engine.clock(), timedelta(seconds=600))  # a live engine on another machine
    with pytest.raises(ComponentError, match="has not taken it yet"):  # queued for the engine holding the lease
        rollouts.pause(ALEX, rollout)
    assert engine.runner.runs == []
    session.release("other-host:1")
    rollouts.drive(rollout)
    assert rollouts.status(rollout).phase == "paused", "the queued pause was decided once the lease was free"


def test_a_resumed_engine_redoes_outstanding_actions_once(
    store: Store, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Persist-then-act: state saved with deployments in flight, then the engine died before running them."""
    rollouts = engine.app.rollouts
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id

    class Dies(Exception):
        pass

    perform = RolloutDriver._perform

    def crash(self: RolloutDriver, state: object, actions: list[object], now: datetime) -> None:
        if actions:  # the first decision's actions: the state with them in flight is already saved
            raise Dies
        perform(self, state, actions, now)  # type: ignore[arg-type]

    monkeypatch.setattr(RolloutDriver, "_perform", crash)
    with pytest.raises(Dies):
        rollouts.drive(rollout)
    monkeypatch.undo()
    assert rollouts.status(rollout).phase == "running"
    assert engine.runner.runs == []
    RolloutSession(store, rollout).release(engine.app.engine.holder)
    rollouts.drive(rollout)
    assert rollouts.status(rollout).phase == "awaiting_promotion"
    assert len(engine.runner.runs) == 5, "each ephemeral environment deployed exactly once"


def test_membership_is_frozen_and_later_environments_show_as_not_covered(store: Store, engine: Engine) -> None:
    rollouts = engine.app.rollouts
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id
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
        now=engine.clock(),
    )
    rollouts.drive(rollout)
    view = rollouts.status(rollout)
    assert view.not_covered == ["checkout/eph-9"]
    assert "checkout/eph-9" not in {e.env for w in view.waves for e in w.envs}
    assert view.waves[0].phase == "awaiting_promotion" and len(view.waves[0].envs) == 5


def test_an_environment_busy_with_a_hand_run_deploy_errors_and_is_retried_never_rolled_back(
    store: Store, engine: Engine
) -> None:
    """Wave 1 has failure_tolerance 0 and on_failure rollback: a failure would roll it back, an error must not."""
    busy = EnvRef("checkout", "eph-1")
    engine.runner.busy[busy] = 2
    rollouts = engine.app.rollouts
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False).id
    view = rollouts.status(rollout)
    assert view.phase == "awaiting_promotion", view.reason
    history = [(d.status, d.kind, d.retryable) for d in engine.app.deployments.list(busy)]
    assert history == [("succeeded", "deploy", False), ("errored", "deploy", True), ("errored", "deploy", True)]
    assert _versions(store)[str(busy)] == "2.0.0"
    assert not [d for d in engine.app.deployments.list() if d.kind == "rollback"], "nothing was rolled back"
    retries = [e.summary for e in view.events if "errored" in e.summary]
    assert (retries and "retry 1 of 8" in engine.app.rollouts.rollouts.events(rollout)[4]["summary"]) or retries


def _with_second_module(store: Store) -> None:
    """Add a `cache` module (resource type `redis`) used by every project, and a plan with a 10-minute bake."""
    estate = store.load_estate()
    versions = tuple(ModuleVersion("cache", v, f"/srv/cache-{v}") for v in ("1.0.0", "2.0.0"))
    plan = estate.plans[0]
    slow = replace(plan, id="slow", waves=(replace(plan.waves[0], gates=(BakeGate(600),)), *plan.waves[1:]))
    store.sync(
        replace(
            estate,
            modules=(*estate.modules, Module("cache", "redis", versions)),
            projects=tuple(replace(p, resources=(*p.resources, Resource("cache", "redis"))) for p in estate.projects),
            rules=(*(r for r in estate.rules if r.owner == "config"), ModuleRule("redis", "cache", "1.0.0")),
            plans=(plan, slow),
        ),
        prune=False,
        force=False,
        dry_run=False,
        actor="alex",
        now=T0,
    )


def test_one_engine_host_drives_every_rollout_and_a_long_gate_holds_up_nobody(store: Store, engine: Engine) -> None:
    _with_second_module(store)
    rollouts = engine.app.rollouts
    slow = rollouts.start(ALEX, "cache", "2.0.0", "slow", preflight=False, follow=False).id
    fast = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id
    ended = rollouts.run_engine(once=True)
    assert ended == {fast: "awaiting_promotion", slow: "awaiting_promotion"}
    promoted = {
        r: next(e["at"] for e in rollouts.rollouts.events(r) if "awaiting_promotion" in e["summary"])
        for r in (fast, slow)
    }
    baked = rollouts.status(slow).waves[0].verify_started_at
    assert baked is not None and promoted[fast] < baked + timedelta(seconds=600) <= promoted[slow]


def test_several_hosts_share_the_rollouts_each_driven_by_exactly_one(store: Store, engine: Engine) -> None:
    _with_second_module(store)
    rollouts = engine.app.rollouts
    first = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id
    second = rollouts.start(ALEX, "cache", "2.0.0", "standard", preflight=False, follow=False).id
    hosts = [EngineHost(replace(engine.app.engine, holder=f"host-{i}:1")) for i in range(2)]
    hosts[0].run([first], until=lambda h: h.settled(first))
    hosts[1].run(until=lambda h: h.all_settled())  # adopts what nobody drives: `second` (first's lease is free)
    assert set(hosts[1].ended) | set(hosts[1].drivers) <= {first, second}
    assert rollouts.status(first).phase == rollouts.status(second).phase == "awaiting_promotion"
    keys = [d.id for d in engine.app.deployments.list(limit=100)]
    assert len(keys) == len(set(keys)) == len(engine.runner.runs) == 10, "each environment deployed once"


def test_status_lists_a_page_of_environments_by_wave_and_state_with_counts(engine: Engine) -> None:
    engine.runner.failing.add(EnvRef("checkout", "eph-2"))
    rollouts = engine.app.rollouts
    rollout = rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False).id
    whole = rollouts.status(rollout)
    assert whole.waves[0].counts == {"rolled_back": 4, "failed": 1} and whole.next_cursor is None
    assert whole.waves[3].counts == {"pending": 5} and len(whole.waves[3].envs) == 5
    first = rollouts.status(rollout, query=EnvQuery(limit=3))
    assert [e.env for w in first.waves for e in w.envs] == ["checkout/eph-1", "checkout/eph-2", "payments/eph-1"]
    assert first.next_cursor == "payments/eph-1"
    rest = rollouts.status(rollout, query=EnvQuery(limit=100, after=first.next_cursor))
    assert sum(len(w.envs) for w in rest.waves) == 13 and rest.next_cursor is None
    failed = rollouts.status(rollout, query=EnvQuery(state="failed"))
    assert [e.env for w in failed.waves for e in w.envs] == ["checkout/eph-2"]
    prod = rollouts.status(rollout, query=EnvQuery(wave="production", limit=2))
    assert [w.number for w in prod.waves if w.envs] == [4] and prod.next_cursor == "checkout/prod-us"
    summary = rollouts.status(rollout, query=EnvQuery(summary=True))
    assert not any(w.envs for w in summary.waves) and summary.waves[0].counts == whole.waves[0].counts


def test_a_held_wave_hands_back_to_the_cli_and_a_lifted_freeze_leaves_no_timer_behind(
    store: Store, engine: Engine
) -> None:
    rollouts, freezes = engine.app.rollouts, engine.app.freezes
    freezes.freeze(ALEX, reason="incident 4711", env_type="ephemeral", until=engine.clock() + timedelta(hours=2))
    rollout = rollouts.start(ALEX, "postgres", "2.0.1", "standard", preflight=False).id
    held = rollouts.status(rollout)
    assert held.phase == "running" and "incident 4711" in held.waves[0].hold
    assert held.waiting_for is not None and held.waiting_for.startswith("wave 1 to be released (by itself at")
    assert engine.clock.slept < 60, "the embedded command returned instead of waiting out the freeze"
    assert not engine.runner.runs
    freezes.unfreeze(ALEX, env_type="ephemeral")
    before = engine.clock.slept
    assert rollouts.resume(ALEX, rollout).phase == "awaiting_promotion", "any command drives it on, embedded"
    assert engine.clock.slept - before < 60, "the lifted freeze's timer did not keep the engine busy"
    assert len(engine.runner.runs) == 5
