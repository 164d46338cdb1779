"""Run one command in its own process group, streaming stdout lines, with a deadline and cancellation.

Terraform starts providers and provisioner shells as children; killing only Terraform would leave
them running (and holding our pipes open). So each command gets its own session/process group and
stopping means: SIGINT to the whole group (Terraform then stops cleanly: it writes state and
releases its lock), then SIGKILL to the group after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class CancelToken:
    """Set once to cancel; whoever runs a process registers how to stop it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on cancel (at once if already cancelled); returns an unregister function."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


@dataclass(frozen=True)
class ProcessResult:
    returncode: int
    stderr: str
    stopped: str | None = None  # "timeout" or "cancelled" when we killed it


class _Stopper:
    """Stops a process group once: SIGINT, then SIGKILL after `grace` seconds."""

    def __init__(self, proc: subprocess.Popen[str], grace: float) -> None:
        self.proc = proc
        self.grace = grace
        self.reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None or self.proc.poll() is not None:
                return
            self.reason = reason
        threading.Thread(target=self._escalate, name="estate-stop", daemon=True).start()

    def _escalate(self) -> None:
        _signal_group(self.proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(self.grace)
        # Even when Terraform exited, children it left behind die with the group.
        _signal_group(self.proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    deadline: float,
    cancel: CancelToken,
    grace: float = 10.0,
) -> ProcessResult:
    """Run `argv`, calling `on_line` for each stdout line; stop it at `deadline` (time.monotonic())."""
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
    ) as proc:
        stopper = _Stopper(proc, grace)
        finished = threading.Event()
        unregister = cancel.on_cancel(lambda: stopper.stop("cancelled"))
        errors: list[str] = []
        threads = [
            threading.Thread(target=_drain, args=(proc.stderr, errors), name="estate-stderr", daemon=True),
            threading.Thread(target=_watch, args=(stopper, finished, deadline), name="estate-deadline", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                on_line(line)
            returncode = proc.wait()
        finally:
            finished.set()
            unregister()
            if proc.poll() is None:  # on_line raised: do not leave Terraform running
                stopper.stop("aborted")
                proc.wait()
            threads[0].join()
    return ProcessResult(returncode, "".join(errors), stopper.reason)


def _drain(stream: IO[str], into: list[str]) -> None:
    into.extend(stream)


def _watch(stopper: _Stopper, finished: threading.Event, deadline: float) -> None:
    if not finished.wait(max(0.0, deadline - time.monotonic())):
        stopper.stop("timeout")
