"""Real Prometheus and the demo exporter for tests (a pytest plugin).

Fixtures:
    prometheus_binary   the path of the Prometheus server binary; FAILS (never skips) when missing
    demo_exporter       examples/exporter/estate_demo_exporter.py on a free port, nothing deployed
    prometheus          a Prometheus scraping `demo_exporter` every second, no demo series left
    start_prometheus    factory: a private Prometheus scraping given targets every second (alert rules optional)

The exporter and the `prometheus` server are shared by the session (a fresh Prometheus needs ~5 s
before its first scrape); each test gets them reset. `prometheus.stop()` is fine: the next test
gets it restarted.

`PrometheusServer.stop()` stops it mid-test ("Prometheus down"); `wait_for_metric` / `wait_until`
poll until Prometheus has scraped what a test needs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from estate.testing.services import (
    DemoExporter,
    PrometheusServer,
    start_exporter,
    stop_exporter,
)

DEFAULT_BINARY = "/usr/bin/prometheus"


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    binary = os.environ.get("ESTATE_TEST_PROMETHEUS") or shutil.which("prometheus") or DEFAULT_BINARY
    if not Path(binary).is_file():
        pytest.fail(
            f"the Prometheus server binary is missing ({binary}); `make test` installs it "
            "(Debian package `prometheus`, via scripts/install-system-deps.sh)",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def _shared_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoExporter]:
    status_dir = tmp_path_factory.mktemp("exporter-status")
    process, port = start_exporter(status_dir)
    yield DemoExporter(process, port, status_dir)
    stop_exporter(process)


@pytest.fixture(scope="session")
def _shared_prometheus(
    prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory, _shared_exporter: DemoExporter
) -> Iterator[PrometheusServer]:
    # One server for the session: Prometheus takes ~5 s after start to run its first scrape.
    server = PrometheusServer(prometheus_binary, tmp_path_factory.mktemp("prometheus"), [_shared_exporter.target])
    yield server.start()
    server.stop()


@pytest.fixture
def demo_exporter(_shared_exporter: DemoExporter) -> DemoExporter:
    """The session's demo exporter with nothing deployed (its status dir emptied)."""
    for child in _shared_exporter.status_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    return _shared_exporter


@pytest.fixture
def prometheus(_shared_prometheus: PrometheusServer, demo_exporter: DemoExporter) -> PrometheusServer:
    """The session's Prometheus scraping `demo_exporter`, restarted if a test stopped it, with no demo
    series left from earlier tests."""
    if not _shared_prometheus.running:
        _shared_prometheus.start()
    # A fresh server needs a few seconds before its first scrape: wait until the exporter shows as up.
    _shared_prometheus.wait_until(f'up{{instance="{demo_exporter.target}"}} == 1', bool)
    _shared_prometheus.wait_until("count(pg_up)", lambda result: not result)
    return _shared_prometheus


@pytest.fixture
def start_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory for a private Prometheus scraping the given targets (and, with a bearer token each, `bearer`),
    evaluating `rules` and sending alerts to `alertmanagers`; stopped at teardown."""
    started: list[PrometheusServer] = []

    def start(
        targets: Sequence[str],
        bearer: Mapping[str, str] | None = None,
        *,
        rules: str = "",
        alertmanagers: Sequence[str] = (),
    ) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusServer(prometheus_binary, workdir, targets, dict(bearer or {}), rules, alertmanagers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
