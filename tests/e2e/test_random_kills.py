"""Dozens of SIGKILLs at random moments of a real 17-environment rollout: the engine and every Terraform process
it started die together (as on a machine crash), a new engine starts, again and again. Afterwards the rollout
has completed, every environment runs the target version with no drift, no deployment record is left queued
or running, and no interrupted run is shown as failed."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

ESTATE = str(Path(sys.executable).with_name("estate"))
SEED = 20261202
KILLS = 36
BUDGET_SECONDS = 150  # stop killing after this long, whatever the count
ENVS = {
    **{f"eph-{i}": "ephemeral" for i in range(1, 8)},
    **{f"dev-{i}": "development" for i in range(1, 6)},
    **{f"prod-{i}": "production" for i in range(1, 6)},
}
PLAN = {
    "id": "kills",
    "waves": [
        {"name": "eph", "select": {"env_type": "ephemeral"}, "max_parallel": 4, "auto_promote": True},
        {"name": "dev", "select": {"env_type": "development"}, "max_parallel": 2, "auto_promote": True},
        {"name": "prod", "select": {"env_type": "production"}, "max_parallel": 2},
    ],
}


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def _estate(sandbox: Sandbox, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ESTATE, *args], env=sandbox.environ, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_dozens_of_random_kills_and_the_rollout_still_ends_right(sandbox: Sandbox) -> None:
    sandbox.environ["PATH"] = f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}"
    doc = estate_doc(ENVS)
    doc["rollout_plans"] = [PLAN]
    sandbox.apply(doc)
    db = sandbox.home / "estate.db"
    deployed = _estate(sandbox, "deploy", *(f"shop/{e}" for e in ENVS))
    assert deployed.returncode == 0, deployed.stderr
    started = _estate(
        sandbox, "rollout", "start", "postgres", "2.0.0", "--plan", "kills", "--detach", "--allow-destroy"
    )
    assert started.returncode == 0, started.stderr

    rng = random.Random(SEED)
    kills, began = 0, time.monotonic()
    while kills < KILLS and time.monotonic() - began < BUDGET_SECONDS:
        engine = subprocess.Popen(
            [ESTATE, "engine", "run", "postgres-1"],
            env=sandbox.environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: Terraform and its provider die with it
        )
        time.sleep(rng.uniform(0.2, 2.5))
        if engine.poll() is not None:  # it finished (the rollout waits for a human or is over)
            break
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
        kills += 1
    assert kills >= 20, f"only {kills} kills: the rollout ended too early to prove anything"

    done = _estate(sandbox, "engine", "run", "postgres-1", "--once")
    assert done.returncode == 0, done.stderr
    status = _estate(sandbox, "rollout", "status", "postgres-1", "-o", "json")
    assert '"phase": "completed"' in status.stdout, status.stdout[-3000:]

    for env in ENVS:
        assert sandbox.status("shop", env)["version"] == "2.0.0", env
    drift = _estate(sandbox, "drift", "--all", "--fail-on-drift")
    assert drift.returncode == 0, f"drift after the kills:\n{drift.stdout}\n{drift.stderr}"
    unfinished = _query(db, "select id, status from deployments where status in ('queued', 'planning', 'applying')")
    assert unfinished == [], "no deployment record may stay queued or running"
    assert _query(db, "select id, reason from deployments where status = 'failed'") == [], "nothing shown as failed"
    interrupted = _query(
        db, "select id, retried_by from deployments where status = 'interrupted' and rollout_id is not null"
    )
    assert interrupted, "the kills interrupted Terraform runs"
    assert all(retry is not None for _, retry in interrupted), "each interrupted run links to the one that redid it"
    applied = _query(
        db,
        "select env, count(*) from deployments where rollout_id = 'postgres-1' "
        "and kind = 'deploy' and status = 'succeeded' group by env",
    )
    assert dict(applied) == dict.fromkeys(ENVS, 1), "each environment applied exactly once"  # type: ignore[arg-type]
