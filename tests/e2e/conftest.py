"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from estate.testing.services import DemoExporter, PrometheusServer
from tests.e2e.gating import Gated
from tests.support.cli import Cli
from tests.support.terraform import Sandbox


@pytest.fixture
def gated(
    cli: Cli,
    sandbox: Sandbox,
    prometheus: PrometheusServer,
    demo_exporter: DemoExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> Gated:
    # A fresh Prometheus (first test of the session, or restarted after a test stopped it) scrapes
    # for the first time ~5 s after it is ready: until then every query has no data.
    prometheus.wait_until(f'up{{instance="{demo_exporter.target}"}} == 1', bool)
    # `cli` and `sandbox` both set ESTATE_HOME; the sandbox's (with real Terraform) is the one in use.
    sandbox.environ["ESTATE_PROMETHEUS_URL"] = prometheus.url
    sandbox.environ["PATH"] = f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}"
    for name, value in sandbox.environ.items():
        monkeypatch.setenv(name, value)
    status = sandbox.home / "demo" / "status"
    status.parent.mkdir(parents=True)
    status.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    return Gated(cli, sandbox, prometheus, demo_exporter)
