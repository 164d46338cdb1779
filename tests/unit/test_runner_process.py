"""Process groups: a deadline or a cancel kills every process of the group, not just the leader."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from estate.runners.process import CancelToken, run_process


def _alive(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0


def test_lines_stream_and_stderr_is_kept(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_process(
        ["sh", "-c", "echo one; echo two; echo oops >&2; exit 3"],
        cwd=tmp_path,
        env=dict(os.environ),
        on_line=lines.append,
        deadline=time.monotonic() + 30,
        cancel=CancelToken(),
    )
    assert lines == ["one\n", "two\n"]
    assert (result.returncode, result.stderr, result.stopped) == (3, "oops\n", None)


def test_deadline_kills_the_whole_group(tmp_path: Path) -> None:
    # The child ignores SIGINT, like a stuck provisioner: the group must still die (SIGKILL after grace).
    script = "trap '' INT; sleep 713 & wait"
    result = run_process(
        ["sh", "-c", script],
        cwd=tmp_path,
        env=dict(os.environ),
        on_line=lambda _: None,
        deadline=time.monotonic() + 0.5,
        cancel=CancelToken(),
        grace=0.5,
    )
    assert result.stopped == "timeout"
    deadline = time.monotonic() + 5
    while _alive("sleep 713") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive("sleep 713")


def test_cancel_stops_a_running_process(tmp_path: Path) -> None:
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    result = run_process(
        ["sh", "-c", "sleep 719"],
        cwd=tmp_path,
        env=dict(os.environ),
        on_line=lambda _: None,
        deadline=time.monotonic() + 30,
        cancel=token,
        grace=0.5,
    )
    assert result.stopped == "cancelled"
    assert token.cancelled


def test_a_failing_line_handler_does_not_leave_the_process_running(tmp_path: Path) -> None:
    def explode(_: str) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_process(
            ["sh", "-c", "echo x; sleep 727"],
            cwd=tmp_path,
            env=dict(os.environ),
            on_line=explode,
            deadline=time.monotonic() + 30,
            cancel=CancelToken(),
            grace=0.2,
        )
    time.sleep(0.5)
    assert not _alive("sleep 727")
