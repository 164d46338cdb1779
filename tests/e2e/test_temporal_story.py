"""The seed story on the Temporal engine: the same CLI commands and the same assertions as on the local engine
(`the_seed_story`), with real Terraform 1.0.3 and a real Prometheus; the rollout runs as a workflow on a real
Temporal dev server, driven by an `estate worker --rollouts --pool default` process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from estate.testing.temporal_server import TemporalDevServer
from tests.e2e.gating import Gated
from tests.e2e.test_gated_rollouts import the_seed_story
from tests.support.temporal import engine_environ

pytestmark = pytest.mark.slow

ESTATE = str(Path(sys.executable).with_name("estate"))


@pytest.fixture
def on_temporal(
    request: pytest.FixtureRequest, temporal_server: TemporalDevServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gated]:
    world: Gated = request.getfixturevalue("gated")  # the local engine's world (tests/e2e/conftest.py), on Temporal
    for name, value in engine_environ(temporal_server).items():
        world.sandbox.environ[name] = value
        monkeypatch.setenv(name, value)
    log_path = world.sandbox.root / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [ESTATE, "worker", "--rollouts", "--pool", "default", "--local-state"],
            env=world.sandbox.environ,
            stdout=log,
            stderr=log,
        )
        try:
            yield world
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(60)
    assert code == 0, log_path.read_text()[-3000:]


def test_the_story_on_temporal(on_temporal: Gated) -> None:
    the_seed_story(on_temporal)
