"""Crash safety: SIGKILL the engine (and its Terraform children) at several points of a real rollout,
restart it, and check the rollout completes with every environment on the right version, no deployment
lost and none applied twice."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

ESTATE = str(Path(sys.executable).with_name("estate"))
ENVS = {
    "eph-1": "ephemeral",
    "eph-2": "ephemeral",
    "dev-1": "development",
    "dev-2": "development",
    "prod-1": "production",
}
PLAN = {
    "id": "crashy",
    "waves": [
        {"name": "eph", "select": {"env_type": "ephemeral"}, "max_parallel": 2, "auto_promote": True},
        {"name": "dev", "select": {"env_type": "development"}, "max_parallel": 1, "auto_promote": True},
        {"name": "prod", "select": {"env_type": "production"}},
    ],
}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_all(proc: subprocess.Popen[bytes]) -> None:
    """What a machine crash does: the engine and every process it started die at once."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []  # tables not created yet


def _run_until(sandbox: Sandbox, args: list[str], condition: Callable[[], bool], timeout: float = 120) -> None:
    proc = subprocess.Popen([ESTATE, *args], env=sandbox.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"estate {' '.join(args)} exited ({proc.returncode}) before the kill point")
        if time.monotonic() > deadline:
            _kill_all(proc)
            pytest.fail("kill point never reached")
        time.sleep(0.05)
    _kill_all(proc)


def test_sigkill_anywhere_and_the_rollout_still_completes_exactly_once(sandbox: Sandbox) -> None:
    sandbox.environ["PATH"] = f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}"
    # Each apply takes 2 s so the poll below sees it running even on a loaded machine.
    doc = estate_doc(ENVS, params={"apply_delay_seconds": 2})
    doc["rollout_plans"] = [PLAN]
    sandbox.apply(doc)
    db = sandbox.home / "estate.db"

    def deployments(status: str, env_prefix: str = "") -> int:
        rows = _query(
            db,
            "select count(*) from deployments where rollout_id = 'postgres-1' "
            f"and status = '{status}' and env like '{env_prefix}%'",
        )
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    # 1. During the first wave's apply.
    _run_until(
        sandbox,
        ["rollout", "start", "postgres", "2.0.0", "--plan", "crashy"],
        lambda: deployments("applying", "eph") > 0,
    )
    # 2. While the second wave deploys (the first one auto-promoted).
    _run_until(sandbox, ["engine", "run", "postgres-1"], lambda: deployments("planning", "dev") > 0)
    # 3. Right after a dev deployment succeeded, before the engine could record it everywhere.
    _run_until(sandbox, ["engine", "run", "postgres-1"], lambda: deployments("succeeded", "dev") > 0)
    # 4. Resume to the end (the last wave needs no promotion once its gates pass).
    done = subprocess.run(
        [ESTATE, "engine", "run", "postgres-1", "--once"],
        env=sandbox.environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status = subprocess.run(
        [ESTATE, "rollout", "status", "postgres-1", "-o", "json"],
        env=sandbox.environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert '"phase": "completed"' in status.stdout

    for env in ENVS:
        assert sandbox.status("shop", env)["version"] == "2.0.0", env
    live = _query(db, "select count(*) from deployments where status in ('queued', 'planning', 'applying')")
    assert live == [(0,)], "no deployment left behind"
    applied = _query(
        db,
        "select env, count(*) from deployments where rollout_id = 'postgres-1' "
        "and kind = 'deploy' and status = 'succeeded' group by env",
    )
    assert dict(applied) == dict.fromkeys(ENVS, 1), "each environment applied exactly once"  # type: ignore[arg-type]
    interrupted = _query(db, "select id, retried_by from deployments where status = 'interrupted'")
    assert interrupted, "the kills did interrupt Terraform runs"
    assert all(retry is not None for _, retry in interrupted), "each interrupted run links to the run that redid it"
    assert _query(db, "select count(*) from deployments where status = 'failed'") == [(0,)], "nothing shown as failed"
