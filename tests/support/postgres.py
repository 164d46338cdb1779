"""A throwaway PostgreSQL 15 cluster for the session (real server, trust auth, 127.0.0.1, a free port).

Fixtures:
    postgres_server     session-scoped: starts the cluster once, stops it (pg_ctl stop) at the end
    postgres_url        session-scoped: `postgresql://postgres@127.0.0.1:PORT/estate` (a fresh database)
    fresh_postgres_url  function-scoped: a new empty database per test

We run as root and initdb refuses root, so the cluster belongs to the `postgres` OS user
(`runuser -u postgres`). If PostgreSQL cannot start, the tests that need it fail loudly: no skips.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"), Path("/usr/bin"))
_counter = itertools.count(1)


def _pg_bin(name: str) -> str:
    for directory in _BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} was not found (apt-get install postgresql-15)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(*argv: str) -> list[str]:
    # a test's sandbox may have narrowed PATH to the /bin directories: runuser lives in /usr/sbin
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


@dataclass
class PostgresServer:
    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_postgres(root: Path) -> PostgresServer:
    """Start a throwaway cluster under `root` (benchmarks use it too); stop it with `stop_postgres`."""
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"),
        check=True,
        capture_output=True,
        text=True,
    )
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
    subprocess.run(
        _as_postgres(
            _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    return PostgresServer(port, data)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="estate-pg-"))
    os.chmod(root, 0o755)
    try:
        server = start_postgres(root)
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from exc
    try:
        yield server
    finally:
        stop_postgres(server)
        shutil.rmtree(root, ignore_errors=True)


def stop_postgres(server: PostgresServer) -> None:
    subprocess.run(
        _as_postgres(_pg_bin("pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"),
        check=False,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database("estate")


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()
