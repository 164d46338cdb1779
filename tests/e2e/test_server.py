"""`estate server` end to end: the story of DESIGN.md with real users, through the CLI in remote mode against a
server process, with real Terraform and a real Prometheus that scrapes both the demo exporter and Estate's
own /metrics (with a token); alex (operator) starts and promotes, his production approval is refused by
four-eyes, bob (approver, production scope) approves, a viewer cannot promote, a deployer scoped to one project
cannot deploy another's environment; the engine inside the server advances bake and Prometheus gates while no
client is connected; every PromQL query of the shipped Grafana dashboard returns data."""

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

from estate.testing.server import bearer, token_for
from estate.testing.services import DemoExporter, PrometheusServer
from tests.e2e.test_gated_rollouts import BAKE_2S, prom_gate, verdicts, wave
from tests.support.cli import REPO, Cli, CliResult
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "grafana" / "estate-rollouts.json"
#: The story's people and their groups (each gets an API token).
USERS = {"root": (), "alex": (), "bob": (), "vera": (), "dana": ("shop-team",)}


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


ENVS = {"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development", "prod-1": "production"}


def story_estate() -> dict[str, Any]:
    """The story's estate, with a second project (`crm`) and the story's people bound to their roles."""
    story = {
        "id": "story",
        "waves": [
            wave("eph", "ephemeral", [prom_gate()], on_failure="rollback"),
            wave("dev", "development", [BAKE_2S]),
            wave("prod", "production", [{"approval": {"role": "approver", "four_eyes": True}}, prom_gate(count=2)]),
        ],
    }
    doc = {**estate_doc(ENVS), "rollout_plans": [story]}
    doc["projects"].append({"id": "crm", "owner": "other", "environments": [{"id": "eph-1", "type": "ephemeral"}]})
    doc["access"] = [
        {"role": "admin", "subjects": ["root"]},
        {"role": "operator", "subjects": ["alex"]},
        {"role": "approver", "subjects": ["alex", "bob"], "scope": {"env_types": ["production"]}},
        {"role": "deployer", "subjects": ["group:shop-team"], "scope": {"projects": ["shop"]}},
        {"role": "viewer", "subjects": ["vera", "dana"]},
    ]
    return doc


def test_the_story_through_the_cli_as_a_client_of_the_server(  # noqa: PLR0915 - one story, told in order
    sandbox: Sandbox,
    cli: Cli,
    server_process: ServerProcess,
    demo_exporter: DemoExporter,
    start_prometheus: Callable[[list[str]], PrometheusServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    envs = ENVS
    status_dir = sandbox.home / "demo" / "status"
    status_dir.parent.mkdir(parents=True)
    status_dir.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    # The server needs a port before Prometheus can be told to scrape it: start it, then Prometheus, and
    # restart nothing: the server reads Prometheus' URL from the store (estate-as-code settings) at each sample.
    doc = story_estate()
    sandbox.apply(doc)  # the bootstrap: bindings applied on the server's machine, embedded
    tokens = {user: token_for(sandbox.environ, user, groups) for user, groups in USERS.items()}
    server = server_process(sandbox.environ)
    prometheus = start_prometheus([demo_exporter.target], bearer={f"127.0.0.1:{server.port}": tokens["vera"]})
    prometheus.wait_until(f'up{{instance="127.0.0.1:{server.port}"}} == 1', bool)
    doc["settings"]["prometheus"] = {"url": prometheus.url}
    (path := tmp_path / "estate.yaml").write_text(json.dumps(doc))
    monkeypatch.setenv("ESTATE_URL", server.url)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}")

    def run(*args: str, code: int = 0, who: str = "alex") -> CliResult:
        monkeypatch.setenv("ESTATE_TOKEN", tokens[who])
        result = cli(*args)
        assert result.code == code, f"estate {' '.join(args)} exited {result.code}:\n{result.out}\n{result.err}"
        return result

    def js(*args: str, code: int = 0, who: str = "alex") -> Any:
        return run(*args, "-o", "json", code=code, who=who).json

    run("apply", "-f", str(path), who="root")
    assert "refused by a server" in run("deploy", "shop/eph-1", "--as", "bob", code=2).err  # the token's subject
    assert js("whoami", who="bob")["grants"] == [{"role": "approver", "scope": "env types production"}]
    assert [e["ref"] for e in js("env", "list", "--project", "shop")] == [f"shop/{e}" for e in envs]
    assert {d["status"] for d in js("deploy", *(f"shop/{e}" for e in envs), who="dana")} == {"succeeded"}
    assert "needs role deployer in a scope covering project crm" in run("deploy", "crm/eph-1", who="dana", code=1).err
    for env in envs:
        prometheus.wait_for_metric("pg_errors_ratio", project="shop", env=env, version="1.0.0")

    # Alex starts 2.0.0 through the server: the gate sees ~0.25 and wave 1 is rolled back.
    view = js("rollout", "start", "postgres", "2.0.0", "--plan", "story", "--allow-destroy")
    rollout = view["id"]
    assert view["phase"] == "failed", view["reason"]
    assert verdicts(view["waves"][0]["gates"][0]) == {"shop/eph-1": "failed", "shop/eph-2": "failed"}
    assert sandbox.status("shop", "eph-1")["version"] == "1.0.0", "Terraform put 1.0.0 back"

    # The patch; the rerun is detached: nobody is connected while the server's engine deploys and samples.
    assert js("rollout", "retarget", rollout, "2.0.1", "--allow-destroy")["version"] == "2.0.1"
    js("rollout", "rerun", rollout, "--wave", "1", "--detach")
    api = httpx.Client(base_url=server.url, timeout=30, headers=bearer(tokens["vera"]))
    request.addfinalizer(api.close)
    wait_for(lambda: api.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "awaiting_promotion", 120)
    gate = api.get(f"/api/v1/rollouts/{rollout}").json()["waves"][0]["gates"][0]
    assert gate["result"] == "passed" and set(verdicts(gate).values()) == {"passed"}

    # Detached again: the 2 s bake of wave 2 runs out with no client connected.
    assert "needs role operator" in run("rollout", "promote", rollout, who="vera", code=1).err
    js("rollout", "promote", rollout, "--detach")
    wait_for(lambda: api.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "awaiting_promotion", 120)
    assert api.get(f"/api/v1/rollouts/{rollout}").json()["waves"][1]["gates"][0]["result"] == "passed"

    view = js("rollout", "promote", rollout)
    assert view["phase"] == "awaiting_approval" and view["current_wave"] == 3
    refused = run("rollout", "approve", rollout, code=1)
    assert "four-eyes" in refused.err and "who started the rollout" in refused.err, refused.err
    assert js("rollout", "approve", rollout, who="bob")["phase"] == "completed"
    assert {e: sandbox.status("shop", e)["version"] for e in envs} == dict.fromkeys(envs, "2.0.1")
    assert (
        f"{rollout}: postgres -> 2.0.1 (plan story, started by alex) is completed"
        in run("rollout", "status", rollout).out
    )
    assert_audited(js(*AUDIT, "--rollout", rollout, "--outcome", "refused"), js(*AUDIT, "--outcome", "denied"))
    assert_dashboard_has_data(prometheus, rollout)


AUDIT = ("audit", "--limit", "100")


def assert_audited(refused: list[dict[str, Any]], denied: list[dict[str, Any]]) -> None:
    """Who tried what, how they authenticated and from where: the four-eyes refusal and the role denials."""
    assert [(a["actor"], a["action"], a["auth"]) for a in refused] == [("alex", "rollout approve", "token")]
    assert refused[0]["source"].startswith("http:127.0.0.1")
    assert {(a["actor"], a["action"]) for a in denied} >= {("vera", "rollout promote"), ("dana", "deploy")}


def assert_dashboard_has_data(prometheus: PrometheusServer, rollout: str) -> None:
    """Grafana's view: every query of the shipped dashboard finds data on this Prometheus; its annotations are
    the ones Estate posts."""
    (annotations,) = json.loads(DASHBOARD.read_text())["annotations"]["list"]
    assert annotations["target"]["tags"] == ["estate"]
    prometheus.wait_for_metric("estate_rollout_environment_info", rollout=rollout, wave="1", state="succeeded")
    time.sleep(2)  # increase() over the restarts counter needs two scrapes of every series
    for wave_number in ("1", "3"):
        variables = {"datasource": "prometheus", "project": ".*", "rollout": rollout, "wave": wave_number}
        for where, query in dashboard_queries(variables):
            assert prometheus.query(query), f"no data for {where} (wave {wave_number}): {query}"
    queries = dict(dashboard_queries({"project": ".*", "rollout": rollout, "wave": "1"}))
    joined = prometheus.query(queries["panel 'Wave $wave of $rollout: error ratio per environment'"])
    assert {(s["metric"]["project"], s["metric"]["env"]) for s in joined} == {("shop", "eph-1"), ("shop", "eph-2")}
