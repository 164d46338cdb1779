"""Secrets stay secret: a run of the story over a real server (real Terraform, a real Prometheus gate queried with
basic auth) with known secrets — API tokens, a rejected token, the Prometheus password, the key that encrypts
sensitive outputs, and a sensitive Terraform output — then every log file, SSE event, audit entry, deployment
log and API response of that run is searched for each of them: zero hits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from estate.testing.server import bearer, token_for
from estate.testing.services import DemoExporter, PrometheusServer
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "pr0m-Pa55word-that-must-never-show"
FORGED = "est_0123456789abcdef_" + "Z" * 43


def test_no_secret_reaches_a_log_an_event_an_audit_entry_or_a_response(
    sandbox: Sandbox,
    server_process: ServerProcess,
    prometheus: PrometheusServer,
    demo_exporter: DemoExporter,
    terraform_binary: Path,
) -> None:
    prometheus.wait_until(f'up{{instance="{demo_exporter.target}"}} == 1', bool)
    key = Fernet.generate_key().decode()
    sandbox.environ.update({"ESTATE_SECRET_KEY": key, "PROM_PASSWORD": PASSWORD})
    status_dir = sandbox.home / "demo" / "status"
    status_dir.parent.mkdir(parents=True)
    status_dir.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    doc = estate_doc({"eph-1": "ephemeral"})
    doc["settings"]["prometheus"] = {
        "url": prometheus.url,
        "basic_auth_user": "estate",
        "basic_auth_password_env": "PROM_PASSWORD",
    }
    gate = {"query": 'max(pg_errors_ratio{env="{{ env.id }}"})', "max": 0.05, "interval": "1s", "count": 2}
    doc["rollout_plans"] = [
        {"id": "p", "waves": [{"name": "eph", "select": {"env_type": "ephemeral"}, "gates": [{"prometheus": gate}]}]}
    ]
    sandbox.apply(doc)
    tokens = {user: token_for(sandbox.environ, user) for user in ("root", "alex")}
    tokens["dana"] = token_for(sandbox.environ, "dana", groups=("team",))
    server = server_process(sandbox.environ)
    responses: list[str] = []

    def call(method: str, path: str, who: str = "alex", *, keep: bool = True, **kwargs: Any) -> httpx.Response:
        with httpx.Client(base_url=server.url, headers=bearer(tokens[who]), timeout=60) as http:
            answer = http.request(method, path, **kwargs)
        if keep:  # every answer is evidence, but the one that shows a new token, once, by design
            responses.append(answer.text + json.dumps(dict(answer.headers)))
        return answer

    def job(answer: httpx.Response, who: str = "alex") -> dict[str, Any]:
        found: dict[str, Any] = call("GET", answer.headers["location"], who, params={"wait": 30}).json()
        assert found["status"] == "succeeded", found
        return found

    deployed = job(call("POST", "/api/v1/deployments", "dana", json={"envs": ["shop/eph-1"]}), "dana")
    first = deployed["result"]["deployments"][0]
    assert first["outputs"]["db.password"] == "(sensitive)"
    output = subprocess.run(
        [str(terraform_binary), "output", "-json"],
        cwd=sandbox.home / "work" / "shop" / "eph-1",
        capture_output=True,
        text=True,
        check=True,
        env={**sandbox.environ, "CHECKPOINT_DISABLE": "1"},
    )
    sensitive = next(v["value"] for v in json.loads(output.stdout).values() if v.get("sensitive"))
    assert len(sensitive) == 64

    prometheus.wait_for_metric("pg_errors_ratio", project="shop", env="eph-1", version="1.0.0")
    body = {"module": "postgres", "version": "2.0.1", "plan": "p", "allow_destroy": True}
    rollout = job(call("POST", "/api/v1/rollouts", json=body))["result"]["id"]
    wait_for(lambda: call("GET", f"/api/v1/rollouts/{rollout}").json()["phase"] == "completed", 120)
    issued = call("POST", "/api/v1/tokens", "root", keep=False, json={"user": "carol"}).json()
    call("GET", "/api/v1/tokens", "root")
    call("POST", f"/api/v1/tokens/{issued['id']}/revoke", "root")
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for token in (FORGED, issued["token"]):
            responses.append(anonymous.get("/api/v1/whoami", headers=bearer(token)).text)
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("estate")), "rollout", "status", rollout],
        env={**sandbox.environ, "ESTATE_URL": server.url, "ESTATE_TOKEN": tokens["alex"]},
        capture_output=True,
        text=True,
        check=True,
    )

    evidence = {
        "responses": "\n".join(responses),
        "cli": cli.stdout + cli.stderr,
        "server log": server.log_path.read_text(errors="replace"),
        "events": _events(server.url, tokens["alex"]),
        "audit": json.dumps(call("GET", "/api/v1/audit", params={"limit": 500}).json()),
        "deployment logs": "\n".join(
            json.dumps(call("GET", f"/api/v1/deployments/{d['id']}/logs").json())
            for d in call("GET", "/api/v1/deployments", params={"limit": 100}).json()["items"]
        ),
    }
    secrets = {
        "root token": tokens["root"],
        "alex token": tokens["alex"],
        "dana token": tokens["dana"],
        "issued token": issued["token"],
        "forged token": FORGED,
        "Prometheus password": PASSWORD,
        "secret key": key,
        "sensitive output": sensitive,
    }
    hits = [
        f"{what} in {where}" for what, value in secrets.items() for where, text in evidence.items() if value in text
    ]
    assert hits == [], hits
    assert "(sensitive)" in evidence["responses"] and '"outcome": "denied"' in evidence["audit"]
    assert evidence["events"].count("event: ") > 10, "the feed was read"


def _events(url: str, token: str) -> str:
    """Every event of the feed from the first: the stream is read until it has been quiet for 3 s."""
    lines: list[str] = []
    timeout = httpx.Timeout(10, read=3)
    with (
        httpx.Client(base_url=url, headers=bearer(token), timeout=timeout) as http,
        http.stream("GET", "/api/v1/events", params={"after": -1}) as stream,
    ):
        try:
            for line in stream.iter_lines():
                lines.append(line)
        except httpx.ReadTimeout:
            pass
    return "\n".join(lines)
