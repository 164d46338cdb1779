"""Runner pools on Temporal with real Terraform, a PostgreSQL store and the `pg` state backend, every worker an
`estate worker` process: each environment's Terraform runs on its own pool (recorded per deployment); a
worker SIGKILLed mid-wave (with its Terraform, as on a node loss) leaves its run to another worker of the
pool, and every environment ends on the target version with exactly one successful deployment; a pool with
no worker shows its environment waiting for a runner, never failed; SIGTERM stops workers cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from estate.testing.temporal_server import TemporalDevServer
from tests.support.temporal import engine_environ
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ESTATE = str(Path(sys.executable).with_name("estate"))
REGIONS = {"eu-1": "eu", "eu-2": "eu", "eu-3": "eu", "eu-4": "eu", "us-1": "us", "us-2": "us", "ap-1": "ap"}


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (Terraform runs in sessions of its own)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
        os.kill(pid, signal.SIGKILL)
    for child in children:
        kill_tree(int(child))


class Estate:
    """The sandbox's `estate` CLI and its worker processes."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def run(self, *args: str) -> Any:
        done = subprocess.run(
            [ESTATE, *args, "-o", "json"], env=self.sandbox.environ, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"estate {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.sandbox.root / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115 - closed by the fixture
        self.logs.append(log)
        proc = subprocess.Popen([ESTATE, "worker", *args], env=self.sandbox.environ, stdout=log, stderr=log)
        self.workers.append(proc)
        return proc

    def wave(self, rollout: str, number: int) -> dict[str, Any]:
        wave: dict[str, Any] = self.run("rollout", "status", rollout)["waves"][number - 1]
        return wave


@pytest.fixture
def estate(sandbox: Sandbox, fresh_postgres_url: str, temporal_server: TemporalDevServer) -> Iterator[Estate]:
    sandbox.environ |= {
        # No runner.backend: the workers default to the `pg` backend on the store's database.
        "ESTATE_DATABASE_URL": f"{fresh_postgres_url}?sslmode=disable",
        "ESTATE_ENGINE_HEARTBEAT_TIMEOUT": "3",
        "PATH": f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}",
        **engine_environ(temporal_server),
    }
    doc = estate_doc(dict.fromkeys(REGIONS, "ephemeral"), params={"apply_delay_seconds": 3})
    for env in doc["projects"][0]["environments"]:
        env["labels"] = {"region": REGIONS[env["id"]]}
    doc["runner_rules"] = [{"pool": p, "labels": {"region": p}} for p in ("eu", "us", "ap")]
    doc["rollout_plans"] = [
        {
            "id": "regions",
            "waves": [
                {
                    "name": "eu-us",
                    "select": {"labels": {}, "envs": [e for e in REGIONS if e != "ap-1"]},
                    "max_parallel": 6,
                },
                {"name": "ap", "select": {"envs": ["ap-1"]}},
            ],
        }
    ]
    sandbox.apply(doc)
    world = Estate(sandbox)
    yield world
    for proc in world.workers:
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.wait()
    for log in world.logs:
        log.close()


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


def until(condition: Callable[[], bool], timeout: float = 180) -> None:
    wait_for(condition, timeout)


def test_pools_a_killed_worker_and_a_pool_without_workers(estate: Estate, fresh_postgres_url: str) -> None:
    url = fresh_postgres_url
    estate.worker("--rollouts")
    eu = [estate.worker("--pool", "eu"), estate.worker("--pool", "eu")]
    estate.worker("--pool", "us")
    rollout = estate.run("rollout", "start", "postgres", "2.0.0", "--plan", "regions", "--no-preflight", "--detach")[
        "id"
    ]

    # An eu deployment is applying on one of the eu workers: that node dies, Terraform with it.
    def applying() -> list[subprocess.Popen[bytes]]:
        holders = {h for (h,) in rows(url, "select holder from deployments where status = 'applying'") if h}
        return [w for w in eu if any(h.endswith(f":{w.pid}") for h in holders)]

    until(lambda: bool(applying()))
    doomed = applying()[0]
    kill_tree(doomed.pid)
    doomed.wait()

    until(lambda: estate.wave(rollout, 1)["phase"] == "awaiting_promotion", timeout=300)
    wave = estate.wave(rollout, 1)
    assert {e["env"]: (e["status"], e["version"]) for e in wave["envs"]} == {
        f"shop/{e}": ("succeeded", "2.0.0") for e in REGIONS if e != "ap-1"
    }
    for env in REGIONS:
        if env != "ap-1":
            assert estate.sandbox.status("shop", env)["version"] == "2.0.0", env
    succeeded = rows(
        url,
        "select env, pool, count(*) from deployments where status = 'succeeded' and kind = 'deploy' group by env, pool",
    )
    assert sorted(succeeded) == sorted((e, REGIONS[e], 1) for e in REGIONS if e != "ap-1"), (
        "one success each, on its pool"
    )
    interrupted = rows(url, "select env, retried_by from deployments where status = 'interrupted'")
    assert interrupted and all(retry is not None for _, retry in interrupted), "the killed run was redone elsewhere"
    assert not rows(url, "select id from deployments where status = 'failed'"), "nothing shown as failed"

    # Nobody serves pool ap: its environment waits for a runner, it does not fail.
    estate.run("rollout", "promote", rollout, "--detach")
    until(lambda: estate.wave(rollout, 2)["envs"][0]["waiting_for_runner"] == "ap")
    time.sleep(5)
    ap = estate.wave(rollout, 2)
    assert ap["phase"] == "deploying"
    assert ap["envs"][0]["status"] == "deploying" and ap["envs"][0]["waiting_for_runner"] == "ap"
    assert rows(url, "select status, pool from deployments where env = 'ap-1'") == [("queued", "ap")]

    # SIGTERM: every worker shuts down cleanly.
    alive = [w for w in estate.workers if w.poll() is None]
    for proc in alive:
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(60) for proc in alive] == [0] * len(alive)
