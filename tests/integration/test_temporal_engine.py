"""The Temporal engine through the application layer, against a real Temporal dev server, with the fake
runner: a rollout is a workflow, commands are Updates (refusals never enter the history), the store is the
read model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from estate.app import App, Caller, bootstrap
from estate.config import load_estate
from estate.domain.alerts import Alert, AlertStatus
from estate.domain.model import ModuleVersion
from estate.domain.runner_rules import RunnerRule
from estate.errors import Refused
from estate.settings import Settings
from estate.store import Store
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from tests.integration.test_engine import PassingSampler
from tests.support.cli import EXAMPLE_ESTATE
from tests.support.temporal import workers_in_thread

pytestmark = pytest.mark.slow

ALEX, BOB = Caller("alex"), Caller("bob")


def fake_runner(store: Store, settings: Settings) -> FakeRunner:
    return FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC))


@pytest.fixture
def environ(tmp_path: Path, temporal: dict[str, str]) -> dict[str, str]:
    return {"ESTATE_HOME": str(tmp_path / "home"), "ESTATE_ACTOR": "alex", **temporal}


REGIONS = (
    RunnerRule("eu", labels=MappingProxyType({"region": "eu"})),
    RunnerRule("us", labels=MappingProxyType({"region": "us"})),
)


@pytest.fixture
def app(environ: dict[str, str]) -> Iterator[App]:
    app = bootstrap(environ)
    estate = replace(load_estate(EXAMPLE_ESTATE).estate, runner_rules=REGIONS)
    now = datetime.now(UTC)
    app.store.sync(estate, prune=False, force=False, dry_run=False, actor="alex", now=now)
    app.store.publish(ModuleVersion("postgres", "2.0.0", "/srv/pg-2.0.0"), "alex", now)
    yield app
    app.close()


def test_a_rollout_runs_as_a_workflow_and_refusals_never_enter_its_history(app: App, environ: dict[str, str]) -> None:
    with workers_in_thread(environ, ["eu", "us"], runner=fake_runner, sampler=PassingSampler()):
        started = app.rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=True)
        view = app.rollouts.status(started.id)
        assert view.phase == "awaiting_promotion", view.reason
        with pytest.raises(Refused, match="cannot approve rollout"):
            app.rollouts.approve(BOB, started.id)
        assert any(e.kind == "refused" for e in app.rollouts.status(started.id).audit)
        view = app.rollouts.promote(ALEX, started.id)
        assert view.current_wave == 2


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_each_environment_runs_on_its_pool_and_a_pool_without_workers_waits_not_fails(
    app: App, environ: dict[str, str]
) -> None:
    sampler = PassingSampler()
    with workers_in_thread(environ, ["eu"], runner=fake_runner, sampler=sampler):
        rollout = app.rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=False).id

        def wave1() -> dict[str, tuple[str, str | None]]:
            return {e.env: (e.status, e.waiting_for_runner) for e in app.rollouts.status(rollout).waves[0].envs}

        us = {"checkout/eph-2", "search/eph-1"}
        wait_for(lambda: all(wave1()[e] == ("succeeded", None) for e in wave1() if e not in us))
        print(wave1())
        time.sleep(2)  # the us deployments stay queued: nobody polls pool us
        assert {e: wave1()[e] for e in us} == dict.fromkeys(us, ("deploying", "us"))
        view = app.rollouts.status(rollout)
        assert view.phase == "running" and view.waves[0].phase == "deploying"
    with workers_in_thread(environ, ["us"], runner=fake_runner, sampler=sampler):
        wait_for(lambda: app.rollouts.status(rollout).phase == "awaiting_promotion")
    pools = {str(d.env): d.pool for d in app.deployments.list(limit=100) if d.rollout_id == rollout}
    assert pools == {str(e): "us" if str(e) in us else "eu" for e in wave1()}


def test_a_freeze_holds_the_workflow_until_lifted_and_an_alert_stops_the_line(
    app: App, environ: dict[str, str]
) -> None:
    """Freezes and alerts live in the store, as with the local engine: the workflow reads them when the
    application nudges it (and every poll interval), holds the wave, then fails it on an alert: rolled back,
    the version marked defective in the same projection."""
    with workers_in_thread(environ, ["eu", "us"], runner=fake_runner, sampler=PassingSampler()):
        app.freezes.freeze(ALEX, reason="incident 4711", env_type="ephemeral")
        rollout = app.rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=True).id
        held = app.rollouts.status(rollout)  # `follow` returned: a held wave with nothing in flight is settled
        assert held.phase == "running" and "incident 4711" in held.waves[0].hold
        assert held.waiting_for is not None and held.waiting_for.startswith("wave 1 to be released")
        assert not [d for d in app.deployments.list(limit=100) if d.rollout_id == rollout]
        app.freezes.unfreeze(ALEX, env_type="ephemeral")
        wait_for(lambda: app.rollouts.status(rollout).phase == "awaiting_promotion")
        project, env = app.rollouts.status(rollout).waves[0].envs[0].env.split("/")
        labels = MappingProxyType({"project": project, "env": env, "severity": "critical"})
        receipt = app.alerts.receive(ALEX, [Alert("PgDown", AlertStatus.FIRING, labels, datetime.now(UTC))])
        assert [d.rollout for d in receipt.delivered] == [rollout]
        wait_for(lambda: app.rollouts.status(rollout).phase == "failed")
    kinds = [(e.kind, e.summary) for e in app.rollouts.status(rollout, history=200).events]
    assert any(k == "alert" and "alert PgDown" in s for k, s in kinds), kinds
    assert any(k == "defective" for k, _ in kinds), kinds
