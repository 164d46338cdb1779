"""The engine host on real components: an environment busy with a hand-run deploy is errored and retried (never
failed, never rolled back); one host drives two rollouts and a 30 s Prometheus gate in one holds up nobody;
two hosts share one PostgreSQL, and when one is SIGKILLed mid-wave the other takes its rollout over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from estate.testing.services import DemoExporter, PrometheusServer
from tests.support.terraform import MODULES, Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

ESTATE = str(Path(sys.executable).with_name("estate"))


def _estate(sandbox: Sandbox, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ESTATE, *args], env=sandbox.environ, capture_output=True, text=True, timeout=timeout, check=False
    )


def _json(sandbox: Sandbox, *args: str) -> Any:
    done = _estate(sandbox, *args, "-o", "json")
    assert done.returncode == 0, f"estate {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def _background(sandbox: Sandbox, *args: str) -> subprocess.Popen[bytes]:
    """`estate ARGS` in its own process group (a kill takes whatever it started with it)."""
    return subprocess.Popen(
        [ESTATE, *args],
        env=sandbox.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


@pytest.fixture
def shell(sandbox: Sandbox) -> Sandbox:
    sandbox.environ["PATH"] = f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}"
    return sandbox


def test_an_environment_busy_with_a_hand_run_deploy_is_errored_and_retried_not_rolled_back(shell: Sandbox) -> None:
    # The hand-run deploy holds e1 long enough for `rollout start` to come up and find it busy on a loaded machine.
    doc = estate_doc({"e1": "ephemeral", "e2": "ephemeral"}, params={"apply_delay_seconds": 8})
    doc["rollout_plans"] = [
        {
            "id": "strict",
            "waves": [
                {
                    "name": "eph",
                    "select": {"env_type": "ephemeral"},
                    "max_parallel": 2,
                    "failure_tolerance": 0,
                    "on_failure": "rollback",  # a single failure would roll the wave back
                }
            ],
        }
    ]
    shell.apply(doc)
    by_hand = _background(shell, "deploy", "shop/e1")  # 1.0.0, holding e1 for a few seconds
    db = shell.home / "estate.db"
    wait_for(lambda: db.exists() and _applying(shell) > 0, timeout=60)

    started = _estate(shell, "rollout", "start", "postgres", "2.0.0", "--plan", "strict", "--no-preflight")
    assert started.returncode == 0, started.stderr
    assert by_hand.wait(timeout=60) == 0

    status = _json(shell, "rollout", "status", "postgres-1")
    assert status["phase"] == "completed", status["reason"]
    e1 = _json(shell, "deployment", "list", "shop/e1")
    rollout_runs = [(d["status"], d["retryable"]) for d in reversed(e1) if d["rollout_id"] == "postgres-1"]
    assert rollout_runs[0] == ("errored", True) and rollout_runs[-1] == ("succeeded", False)
    assert all(s == "errored" for s, _ in rollout_runs[:-1]), rollout_runs
    assert "is busy" in next(d["reason"] for d in e1 if d["status"] == "errored")
    assert not [d for d in _json(shell, "deployment", "list") if d["kind"] == "rollback"], "nothing rolled back"
    assert shell.status("shop", "e1")["version"] == shell.status("shop", "e2")["version"] == "2.0.0"


def _applying(sandbox: Sandbox) -> int:
    found = _estate(sandbox, "deployment", "list", "shop/e1", "-o", "json")
    return sum(1 for d in json.loads(found.stdout or "[]") if d["status"] == "applying") if found.returncode == 0 else 0


def _two_modules(envs: dict[str, str], cache_envs: dict[str, str]) -> dict[str, Any]:
    """Project `shop` uses postgres; project `crm` uses `cache` (another resource type, the same example
    Terraform module, so each writes its own status file)."""
    doc = estate_doc(envs)
    inputs = doc["modules"][0]["versions"][0]["inputs"]
    doc["modules"].append(
        {
            "id": "cache",
            "resource_type": "redis",
            "versions": [
                {"version": v, "source": str(MODULES / f"v{v}"), "inputs": inputs} for v in ("1.0.0", "2.0.1")
            ],
        }
    )
    doc["module_rules"].append({"resource_type": "redis", "module": "cache", "version": "1.0.0"})
    doc["projects"].append(
        {
            "id": "crm",
            "owner": "team",
            "resources": {"cache": {"type": "redis", "params": {"size": "small"}}},
            "environments": [{"id": e, "type": t} for e, t in cache_envs.items()],
        }
    )
    return doc


def test_one_host_drives_two_rollouts_and_a_30s_gate_in_one_holds_up_nobody(
    shell: Sandbox, prometheus: PrometheusServer, demo_exporter: DemoExporter
) -> None:
    prometheus.wait_until(f'up{{instance="{demo_exporter.target}"}} == 1', bool)
    shell.environ["ESTATE_PROMETHEUS_URL"] = prometheus.url
    status_dir = shell.home / "demo" / "status"
    status_dir.parent.mkdir(parents=True)
    status_dir.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    doc = _two_modules({"e1": "ephemeral"}, {"c1": "ephemeral", "c2": "development", "c3": "production"})
    gate = {"query": 'max(pg_errors_ratio{project="shop", env="{{ env.id }}"})', "max": 0.05}
    doc["rollout_plans"] = [
        {
            "id": "gated",
            "waves": [
                {
                    "name": "eph",
                    "select": {"env_type": "ephemeral"},
                    "gates": [{"prometheus": {**gate, "interval": "15s", "count": 3}}],  # 30 s from first to last
                }
            ],
        },
        {
            "id": "quick",
            "waves": [
                {"name": t, "select": {"env_type": t}, "auto_promote": True}
                for t in ("ephemeral", "development", "production")
            ],
        },
    ]
    shell.apply(doc)
    assert _estate(shell, "deploy", "shop/e1", "crm/c1", "crm/c2", "crm/c3").returncode == 0
    gated = _json(shell, "rollout", "start", "postgres", "2.0.1", "--plan", "gated", "--detach", "--allow-destroy")
    quick = _json(shell, "rollout", "start", "cache", "2.0.1", "--plan", "quick", "--detach", "--allow-destroy")
    host = _background(shell, "engine", "run")  # every active rollout
    try:
        wait_for(lambda: _json(shell, "rollout", "status", quick["id"])["phase"] == "completed", timeout=120)
        gated_now = _json(shell, "rollout", "status", gated["id"])
        assert gated_now["waves"][0]["phase"] == "verifying", "the other rollout finished while this gate samples"
        wait_for(lambda: _json(shell, "rollout", "status", gated["id"])["phase"] == "completed", timeout=120)
    finally:
        _stop(host)
    gated_view = _json(shell, "rollout", "status", gated["id"])
    evidence = gated_view["waves"][0]["gates"][0]
    assert evidence["result"] == "passed" and len(evidence["details"]["subjects"][0]["samples"]) == 3
    quick_done = max(e["at"] for e in _json(shell, "rollout", "status", quick["id"])["events"])
    assert quick_done < evidence["at"], "the quick rollout completed before the 30 s gate was judged"


@pytest.fixture
def two_hosts_estate(shell: Sandbox, fresh_postgres_url: str) -> Iterator[Sandbox]:
    shell.environ["ESTATE_DATABASE_URL"] = fresh_postgres_url
    shell.environ["ESTATE_LEASE_TTL"] = "6"
    yield shell


def _leases(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select name, holder from leases where name like 'rollout:%' and expires_at > now()")
        return {name.removeprefix("rollout:"): holder for name, holder in rows}


def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


@pytest.mark.postgres
def test_two_hosts_share_one_postgres_and_a_killed_hosts_rollout_is_taken_over(two_hosts_estate: Sandbox) -> None:
    shell = two_hosts_estate
    url = shell.environ["ESTATE_DATABASE_URL"]
    envs = {f"e{i}": "ephemeral" for i in range(1, 5)}
    doc = _two_modules(envs, {"c1": "ephemeral", "c2": "ephemeral"})
    doc["projects"][0]["resources"]["db"]["params"]["apply_delay_seconds"] = 3
    doc["rollout_plans"] = [
        {"id": "p", "waves": [{"name": "eph", "select": {"env_type": "ephemeral"}, "max_parallel": 1}]}
    ]
    shell.apply(doc)
    assert _estate(shell, "deploy", *(f"shop/{e}" for e in envs), "crm/c1", "crm/c2").returncode == 0
    first = _json(shell, "rollout", "start", "postgres", "2.0.1", "--plan", "p", "--detach", "--no-preflight")["id"]
    second = _json(shell, "rollout", "start", "cache", "2.0.1", "--plan", "p", "--detach", "--no-preflight")["id"]

    hosts = [_background(shell, "engine", "run"), _background(shell, "engine", "run")]
    try:
        wait_for(lambda: set(_leases(url)) == {first, second}, timeout=60)
        assert len(set(_leases(url).values())) in (1, 2)  # one lease per rollout: each has exactly one driver
        victim_holder = _leases(url)[first]
        victim = next(h for h in hosts if victim_holder.endswith(f":{h.pid}"))
        wait_for(
            lambda: (
                _pg(url, f"select count(*) from deployments where rollout_id = '{first}' and status = 'succeeded'")[0][
                    0
                ]
                >= 1
            ),
            timeout=120,
        )
        killed_at = time.monotonic()
        _stop(victim, signal.SIGKILL)  # mid-wave: one environment done, the next one applying
        survivor = next(h for h in hosts if h is not victim)
        wait_for(lambda: _leases(url).get(first, victim_holder) != victim_holder, timeout=30)
        assert time.monotonic() - killed_at <= 6 + 2, "taken over within the lease TTL"
        assert _leases(url)[first].endswith(f":{survivor.pid}")
        wait_for(lambda: _json(shell, "rollout", "status", first)["phase"] == "completed", timeout=180)
        wait_for(lambda: _json(shell, "rollout", "status", second)["phase"] == "completed", timeout=180)
    finally:
        for host in hosts:
            _stop(host)
    for env in envs:
        assert shell.status("shop", env)["version"] == "2.0.1", env
    applied = _pg(
        url,
        f"select env, count(*) from deployments where rollout_id = '{first}' and kind = 'deploy' "
        "and status = 'succeeded' group by env",
    )
    assert dict(applied) == dict.fromkeys(envs, 1), "nothing deployed twice, nothing lost"
    left = _pg(url, "select count(*) from deployments where status in ('queued', 'planning', 'applying')")
    assert left == [(0,)]
    assert _pg(url, "select count(*) from deployments where status = 'failed'") == [(0,)]
