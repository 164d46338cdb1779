"""Real Alertmanager for tests (a pytest plugin): Debian's `prometheus-alertmanager` on a free loopback port,
clustering off, routing every alert at once to one webhook.

Fixtures:
    alertmanager_binary   the binary; FAILS (never skips) when missing
    start_alertmanager    factory: `start_alertmanager(webhook_url, http_config)`; stopped at teardown
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from estate.testing.services import ALERTMANAGER_BINARY, AlertmanagerServer, alertmanager_binary_path

StartAlertmanager = Callable[..., AlertmanagerServer]


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    binary = os.environ.get("ESTATE_TEST_ALERTMANAGER") or alertmanager_binary_path() or ALERTMANAGER_BINARY
    if not Path(binary).is_file():
        pytest.fail(
            f"the Alertmanager binary is missing ({binary}); `make test` installs it "
            "(Debian package `prometheus-alertmanager`, via scripts/install-system-deps.sh)",
            pytrace=False,
        )
    return binary


@pytest.fixture
def start_alertmanager(alertmanager_binary: str, tmp_path: Path) -> Iterator[StartAlertmanager]:
    started: list[AlertmanagerServer] = []

    def start(webhook: str, http_config: Mapping[str, Any] | None = None) -> AlertmanagerServer:
        workdir = tmp_path / f"alertmanager-{len(started)}"
        workdir.mkdir()
        server = AlertmanagerServer(alertmanager_binary, workdir, webhook, dict(http_config or {}))
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()
