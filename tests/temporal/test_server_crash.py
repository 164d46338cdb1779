"""SIGKILL the Temporal server in the middle of a rollout (a bake timer running) and start it again on the same
database: the rollout carries on where it was and completes; the workers reconnect by themselves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from estate.app import Caller, bootstrap
from estate.config import load_estate
from estate.domain.model import ModuleVersion
from estate.domain.plans import BakeGate, RolloutPlan
from estate.testing.temporal_server import TemporalDevServer
from tests.integration.test_temporal_engine import fake_runner, wait_for
from tests.support.cli import EXAMPLE_ESTATE
from tests.support.temporal import engine_environ, workers_in_thread

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TemporalDevServer]:
    started = TemporalDevServer(tmp_path / "temporal.db").start()
    yield started
    started.stop()


def test_the_rollout_survives_a_temporal_server_crash(tmp_path: Path, server: TemporalDevServer) -> None:
    environ = {"ESTATE_HOME": str(tmp_path / "home"), **engine_environ(server)}
    app = bootstrap(environ)
    estate = load_estate(EXAMPLE_ESTATE).estate
    standard = estate.require_plan("standard")
    baking = RolloutPlan(
        "baking",
        tuple(replace(w, gates=(BakeGate(4),), auto_promote=True) for w in standard.waves[:2]),
    )
    now = datetime.now(UTC)
    app.store.sync(replace(estate, plans=(baking,)), prune=False, force=False, dry_run=False, actor="t", now=now)
    app.store.publish(ModuleVersion("postgres", "2.0.0", "/srv/pg-2.0.0"), "t", now)
    with workers_in_thread(environ, ["default"], runner=fake_runner):
        rollout = app.rollouts.start(
            Caller("alex"), "postgres", "2.0.0", "baking", preflight=False, follow=False, allow_uncovered=True
        ).id
        wait_for(lambda: app.rollouts.status(rollout).waves[0].phase == "verifying")  # baking: a timer runs
        server.kill()
        time.sleep(2)
        assert app.rollouts.status(rollout).waves[0].phase == "verifying", "nothing moves without Temporal"
        server.start()
        wait_for(lambda: app.rollouts.status(rollout).phase == "completed", timeout=120)
    view = app.rollouts.status(rollout)
    assert [w.phase for w in view.waves] == ["succeeded", "succeeded"]
    assert {e.version for w in view.waves for e in w.envs} == {"2.0.0"}
    app.close()
