"""The Temporal engine through the application layer, against a real Temporal dev server, with the fake
runner: a rollout is a workflow, commands are Updates (refusals never enter the history), the store is the
read model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from estate.app import App, Caller, Wiring, bootstrap
from estate.config import load_estate
from estate.domain.model import ModuleVersion
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


@pytest.fixture
def app(environ: dict[str, str]) -> Iterator[App]:
    app = bootstrap(environ)
    estate = load_estate(EXAMPLE_ESTATE).estate
    now = datetime.now(UTC)
    app.store.sync(estate, prune=False, force=False, dry_run=False, actor="alex", now=now)
    app.store.publish(ModuleVersion("postgres", "2.0.0", "/srv/pg-2.0.0"), "alex", now)
    yield app
    app.close()


def test_a_rollout_runs_as_a_workflow_and_refusals_never_enter_its_history(app: App, environ: dict[str, str]) -> None:
    with workers_in_thread(environ, ["default"], runner=fake_runner, sampler=PassingSampler()):
        started = app.rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False, follow=True)
        view = app.rollouts.status(started.id)
        assert view.phase == "awaiting_promotion", view.reason
        with pytest.raises(Refused, match="cannot approve rollout"):
            app.rollouts.approve(BOB, started.id)
        assert any("refused" == e.kind for e in app.rollouts.status(started.id).audit)
        view = app.rollouts.promote(ALEX, started.id)
        assert view.current_wave == 2
