"""Alertmanager stops the line, end to end: real Terraform deploys a bad version from inside a real `estate
server`, the demo exporter reports its errors, a real Prometheus fires an alerting rule, a real Alertmanager
calls Estate's webhook with alex's token (operator), and the wave rolls back per its policy, keeping the alert
as evidence. A second Alertmanager presents a wrong credential: each of its calls is refused (401, audited) and
acts on nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from estate.app import bootstrap
from estate.app.audit import AuditFilter
from estate.testing.server import ProcessServer, bearer, token_for
from estate.testing.services import DemoExporter, PrometheusServer
from tests.support.alertmanager import StartAlertmanager
from tests.support.cli import Cli
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

RULES = """
groups:
  - name: estate-demo
    interval: 1s
    rules:
      - alert: PgErrorsHigh
        expr: pg_errors_ratio > 0.05
        for: 0s
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.project }}/{{ $labels.env }} fails {{ $value }} of its queries"}
"""
PLAN = {
    "id": "guarded",
    "alert_selector": 'severity=~"critical|page"',
    "waves": [
        {
            "name": "eph",
            "select": {"env_type": "ephemeral"},
            "max_parallel": 2,
            "on_failure": "rollback",
            "gates": [{"bake": "10m"}],  # the wave waits here; the alert stops it first
        },
        {"name": "dev", "select": {"env_type": "development"}},
    ],
}
ENVS = {"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development"}


@dataclass
class Line:
    """The running stack: Estate's server, alex's token, the Prometheus that fires the alerts."""

    server: ProcessServer
    alex: str
    prometheus: PrometheusServer


@pytest.fixture
def line(
    cli: Cli,
    sandbox: Sandbox,
    demo_exporter: DemoExporter,
    start_prometheus: Any,
    start_alertmanager: StartAlertmanager,
    server_process: ServerProcess,
) -> Line:
    """Every environment on 1.0.0 (healthy), an `estate server`, two Alertmanagers calling its webhook (alex's
    token; a wrong one), and a Prometheus that knows both and fires PgErrorsHigh."""
    status = sandbox.home / "demo" / "status"
    status.parent.mkdir(parents=True)
    status.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    path = sandbox.root / "estate.yaml"
    path.write_text(yaml.safe_dump({**estate_doc(ENVS), "rollout_plans": [PLAN]}))
    alex = token_for(sandbox.environ, "alex", estate=path)  # operator
    assert cli("deploy", *(f"shop/{e}" for e in ENVS), "-o", "json").code == 0
    server = server_process(sandbox.environ)
    hook = f"{server.url}/api/v1/hooks/alertmanager"
    good = start_alertmanager(hook, {"authorization": {"type": "Bearer", "credentials": alex}})
    bad = start_alertmanager(hook, {"basic_auth": {"username": "alex", "password": "est_0000000000000000_wrong"}})
    prometheus: PrometheusServer = start_prometheus(
        [demo_exporter.target], rules=RULES, alertmanagers=[good.target, bad.target]
    )
    prometheus.wait_for_alertmanagers()
    for env in ENVS:
        prometheus.wait_for_metric("pg_errors_ratio", project="shop", env=env, version="1.0.0")
    return Line(server, alex, prometheus)


def test_a_firing_alert_rolls_the_wave_back_and_a_wrong_credential_acts_on_nothing(
    line: Line, sandbox: Sandbox
) -> None:
    server, alex, prometheus = line.server, line.alex, line.prometheus
    with httpx.Client(base_url=server.url, headers=bearer(alex), timeout=30) as http:
        body = {"module": "postgres", "version": "2.0.0", "plan": "guarded", "allow_destroy": True}
        job = http.post("/api/v1/rollouts", json=body)
        assert job.status_code == 202, job.text
        started = http.get(job.headers["location"], params={"wait": 30}).json()
        assert started["status"] == "succeeded", started
        rollout = started["result"]["id"]
        began = time.monotonic()

        def view() -> dict[str, Any]:
            found: dict[str, Any] = http.get(f"/api/v1/rollouts/{rollout}").json()
            return found

        try:
            wait_for(lambda: view()["phase"] == "failed", 90)
        except AssertionError:
            events = "\n".join(e["summary"] for e in view()["events"])
            raise AssertionError(f"the rollout did not roll back; its log:\n{events}\n{server.log_tail()}") from None
        took = time.monotonic() - began
        final = view()

    eph = final["waves"][0]
    assert eph["phase"] == "rolled_back" and eph["reason"].startswith("alert PgErrorsHigh firing for shop/eph-")
    assert {e["env"]: (e["status"], e["version"]) for e in eph["envs"]} == {
        "shop/eph-1": ("rolled_back", "1.0.0"),
        "shop/eph-2": ("rolled_back", "1.0.0"),
    }
    first = eph["alerts"][0]
    assert first["name"] == "PgErrorsHigh" and first["effect"] == "failed_wave"
    assert first["labels"]["severity"] == "critical" and first["labels"]["version"] == "2.0.0"
    assert first["starts_at"] and first["generator_url"].startswith(f"{prometheus.url}/graph?g0.expr=pg_errors_ratio")
    assert eph["gates"][0]["result"] is None, "the bake never ended: the alert stopped the line first"
    assert final["waves"][1]["phase"] == "pending"
    for env in ("eph-1", "eph-2"):  # Terraform put the previous version back; dev was never touched
        assert sandbox.status("shop", env)["version"] == "1.0.0"
    assert sandbox.status("shop", "dev-1")["version"] == "1.0.0"
    print(f"alert to rolled back: {took:.1f} s")

    # The Alertmanager with the wrong credential was refused every time (401, audited); alex's alerts alone acted.
    app = bootstrap(sandbox.environ)
    try:
        denied = app.audit.entries(AuditFilter(outcome="denied"))
        hooks = [e for e in denied if e.target == "POST /api/v1/hooks/alertmanager"]
        assert hooks, "Alertmanager with the wrong credential called too"
        assert all(e.actor == "anonymous" and e.action == "authenticate" for e in hooks)
        received = app.rollouts.rollouts.events(rollout, kinds=("alert",))
        assert received and {e["actor"] for e in received} == {"alex"}
    finally:
        app.close()
