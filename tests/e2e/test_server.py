"""`estate server` end to end: the story of DESIGN.md through the CLI in remote mode (ESTATE_URL) against a
server process, with real Terraform and a real Prometheus that scrapes both the demo exporter and Estate's
own /metrics; the engine inside the server advances bake and Prometheus gates while no client is connected;
every PromQL query of the shipped Grafana dashboard returns data."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from estate.testing.services import DemoExporter, PrometheusServer
from tests.e2e.test_gated_rollouts import BAKE_2S, prom_gate, verdicts, wave
from tests.support.cli import REPO, Cli, CliResult
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "grafana" / "estate-rollouts.json"


def dashboard_queries(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable of the dashboard, variables substituted;
    `label_values(expr, label)` becomes `count by (label) (expr)`."""
    doc = json.loads(DASHBOARD.read_text())

    def substitute(expr: str) -> str:
        for name, value in variables.items():
            expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
        assert "$" not in expr, f"unsubstituted variable in {expr}"
        return expr

    found = []
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*), *(\w+)\)", variable["query"]["query"])
            assert match, variable["query"]
            found.append((f"variable {variable['name']}", substitute(f"count by ({match[2]}) ({match[1]})")))
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", substitute(target["expr"])))
    return found


def test_the_story_through_the_cli_as_a_client_of_the_server(
    sandbox: Sandbox,
    cli: Cli,
    server_process: ServerProcess,
    demo_exporter: DemoExporter,
    start_prometheus: Callable[[list[str]], PrometheusServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    envs = {"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development", "prod-1": "production"}
    story = {
        "id": "story",
        "waves": [
            wave("eph", "ephemeral", [prom_gate()], on_failure="rollback"),
            wave("dev", "development", [BAKE_2S]),
            wave("prod", "production", [{"approval": {"role": "approver", "four_eyes": True}}, prom_gate(count=2)]),
        ],
    }
    status_dir = sandbox.home / "demo" / "status"
    status_dir.parent.mkdir(parents=True)
    status_dir.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    # The server needs a port before Prometheus can be told to scrape it: start it, then Prometheus, and
    # restart nothing: the server reads Prometheus' URL from the store (estate-as-code settings) at each sample.
    server = server_process(sandbox.environ)
    prometheus = start_prometheus([demo_exporter.target, f"127.0.0.1:{server.port}"])
    prometheus.wait_until(f'up{{instance="127.0.0.1:{server.port}"}} == 1', bool)
    doc = {**estate_doc(envs), "rollout_plans": [story], "roles": {"approver": ["alex", "bob"]}}
    doc["settings"]["prometheus"] = {"url": prometheus.url}
    (path := tmp_path / "estate.yaml").write_text(json.dumps(doc))
    monkeypatch.setenv("ESTATE_URL", server.url)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}")

    def run(*args: str, code: int = 0) -> CliResult:
        result = cli(*args)
        assert result.code == code, f"estate {' '.join(args)} exited {result.code}:\n{result.out}\n{result.err}"
        return result

    def js(*args: str, code: int = 0) -> Any:
        return run(*args, "-o", "json", code=code).json

    run("apply", "-f", str(path))
    assert [e["ref"] for e in js("env", "list")] == [f"shop/{e}" for e in envs]
    assert {d["status"] for d in js("deploy", *(f"shop/{e}" for e in envs))} == {"succeeded"}
    for env in envs:
        prometheus.wait_for_metric("pg_errors_ratio", project="shop", env=env, version="1.0.0")

    # Alex starts 2.0.0 through the server: the gate sees ~0.25 and wave 1 is rolled back.
    view = js("rollout", "start", "postgres", "2.0.0", "--plan", "story", "--allow-destroy", "--as", "alex")
    rollout = view["id"]
    assert view["phase"] == "failed", view["reason"]
    assert verdicts(view["waves"][0]["gates"][0]) == {"shop/eph-1": "failed", "shop/eph-2": "failed"}
    assert sandbox.status("shop", "eph-1")["version"] == "1.0.0", "Terraform put 1.0.0 back"

    # The patch; the rerun is detached: nobody is connected while the server's engine deploys and samples.
    assert js("rollout", "retarget", rollout, "2.0.1", "--allow-destroy", "--as", "alex")["version"] == "2.0.1"
    js("rollout", "rerun", rollout, "--wave", "1", "--detach", "--as", "alex")
    api = httpx.Client(base_url=server.url, timeout=30)
    request.addfinalizer(api.close)
    wait_for(lambda: api.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "awaiting_promotion", 120)
    gate = api.get(f"/api/v1/rollouts/{rollout}").json()["waves"][0]["gates"][0]
    assert gate["result"] == "passed" and set(verdicts(gate).values()) == {"passed"}

    # Detached again: the 2 s bake of wave 2 runs out with no client connected.
    js("rollout", "promote", rollout, "--detach", "--as", "alex")
    wait_for(lambda: api.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "awaiting_promotion", 120)
    assert api.get(f"/api/v1/rollouts/{rollout}").json()["waves"][1]["gates"][0]["result"] == "passed"

    view = js("rollout", "promote", rollout, "--as", "alex")
    assert view["phase"] == "awaiting_approval" and view["current_wave"] == 3
    refused = run("rollout", "approve", rollout, "--as", "alex", code=1)
    assert "four-eyes" in refused.err, refused.err
    view = js("rollout", "approve", rollout, "--as", "bob")
    assert view["phase"] == "completed", view["reason"]
    assert {e: sandbox.status("shop", e)["version"] for e in envs} == dict.fromkeys(envs, "2.0.1")
    text = run("rollout", "status", rollout).out
    assert f"{rollout}: postgres -> 2.0.1" in text and "completed" in text
    audit = js("audit", "--rollout", rollout, "--outcome", "refused")
    assert [(a["actor"], a["action"], a["auth"]) for a in audit] == [("alex", "rollout approve", "none")]
    assert audit[0]["source"].startswith("http:127.0.0.1")

    assert_dashboard_has_data(prometheus, rollout)


def assert_dashboard_has_data(prometheus: PrometheusServer, rollout: str) -> None:
    """Grafana's view: every query of the shipped dashboard finds data on this Prometheus."""
    prometheus.wait_for_metric("estate_rollout_environment_info", rollout=rollout, wave="1", state="succeeded")
    time.sleep(2)  # increase() over the restarts counter needs two scrapes of every series
    for wave_number in ("1", "3"):
        variables = {"datasource": "prometheus", "project": ".*", "rollout": rollout, "wave": wave_number}
        for where, query in dashboard_queries(variables):
            assert prometheus.query(query), f"no data for {where} (wave {wave_number}): {query}"
    queries = dict(dashboard_queries({"project": ".*", "rollout": rollout, "wave": "1"}))
    joined = prometheus.query(queries["panel 'Wave $wave of $rollout: error ratio per environment'"])
    assert {(s["metric"]["project"], s["metric"]["env"]) for s in joined} == {("shop", "eph-1"), ("shop", "eph-2")}
