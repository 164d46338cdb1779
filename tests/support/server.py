"""`estate server` for tests (a pytest plugin): uvicorn on a free loopback port.

Fixtures:
    estate_server   factory: serve a hosted App on a thread of the test process (inject a fake runner or a
                    clock through `Wiring`); stopped at teardown
    server_process  factory: `estate server` as its own process (SIGKILL-able); stopped at teardown
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from estate.app import Wiring
from estate.testing.server import ProcessServer, ThreadServer, serve_in_process, serve_in_thread

EstateServer = Callable[..., ThreadServer]
ServerProcess = Callable[..., ProcessServer]


@pytest.fixture
def estate_server() -> Iterator[EstateServer]:
    started: list[ThreadServer] = []

    def start(environ: Mapping[str, str], wiring: Wiring | None = None, **api: Any) -> ThreadServer:
        server = serve_in_thread(environ, wiring, **api)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    started: list[ProcessServer] = []

    def start(environ: Mapping[str, str]) -> ProcessServer:
        server = serve_in_process(environ, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
