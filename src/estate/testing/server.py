"""`estate server` for tests and benchmarks, on a free loopback port: in this process on a thread (so a test
can wire a fake runner or clock into it), or as a separate process (`estate server`, killed by its PID)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import uvicorn

from estate.api import create_api
from estate.app import App, Caller, Wiring, bootstrap
from estate.testing.services import free_port, http_get, stop_process

STARTUP_TIMEOUT = 60.0


@dataclass
class ThreadServer:
    """The API of a hosted App, served by uvicorn on a thread of this process."""

    app: App
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.app.close()


def serve_in_thread(environ: Mapping[str, str], wiring: Wiring | None = None, **api: Any) -> ThreadServer:
    """Bootstrap a hosted App on `environ` and serve it until `stop()`; returns once it answers /readyz."""
    wiring = wiring or Wiring()
    wiring.hosted = True
    app = bootstrap(environ, wiring)
    port = free_port()
    config = uvicorn.Config(create_api(app, **api), host="127.0.0.1", port=port, log_level="warning")
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"estate-server-{port}", daemon=True)
    thread.start()
    running = ThreadServer(app, port, server, thread)
    _wait_ready(running.url, thread.is_alive)
    return running


@dataclass
class ProcessServer:
    """`estate server` as its own process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)
        if self.log is not None:
            self.log.close()
            self.log = None

    def kill(self) -> None:
        """SIGKILL: the server dies without cleaning anything up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def serve_in_process(environ: Mapping[str, str], log_path: Path) -> ProcessServer:
    """Start `estate server` with `environ` on a free port; returns once it answers /readyz."""
    port = free_port()
    log = log_path.open("ab")
    estate = str(Path(sys.executable).with_name("estate"))
    process = subprocess.Popen(
        [estate, "server", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **environ},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = ProcessServer(process, port, log_path, log)
    try:
        _wait_ready(running.url, lambda: process.poll() is None)
    except RuntimeError:
        running.stop()
        raise RuntimeError(f"estate server did not start; its log:\n{running.log_tail()}") from None
    return running


#: What an operator at the keyboard of the server's machine is: trusted (embedded), like `estate token create`.
AT_THE_MACHINE = Caller("local:test")


def token_for(environ: Mapping[str, str], user: str, groups: tuple[str, ...] = (), estate: Path | None = None) -> str:
    """An API token for `user`, created as an admin bootstraps one: embedded, on the store's machine. With
    `estate`, that estate-as-code (its `access:` bindings) is applied first the same way."""
    app = bootstrap(environ)
    try:
        if estate is not None:
            app.inventory.apply(AT_THE_MACHINE, estate, dry_run=False, prune=False, force=False)
        return app.identity.create_token(AT_THE_MACHINE, user, groups=groups).token
    finally:
        app.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _wait_ready(url: str, alive: Any) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and alive():
        try:
            if http_get(f"{url}/readyz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server at {url} did not become ready")
