"""The story of DESIGN.md driven entirely over HTTP, as another system (a pipeline, a bot) would drive it: raw
requests to a server process on SQLite and on PostgreSQL, with real Terraform and a real Prometheus gate.
Estate-as-code applied over the API (dry run first), a deploy job, the preview, the rollout that fails its gate
on wave 1 and rolls it back, the retarget job to the patch, the rerun, the promotions, four-eyes refusing the
starter's approval as problem+json, the approver's approval, and the audit trail of the whole story."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from estate.testing.server import bearer, token_for
from estate.testing.services import DemoExporter, PrometheusServer
from tests.e2e.test_gated_rollouts import verdicts
from tests.e2e.test_server import ENVS, story_estate
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, sandbox: Sandbox) -> str:
    """The store the server runs on: SQLite under the sandbox's home, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        sandbox.environ["ESTATE_DATABASE_URL"] = request.getfixturevalue("fresh_postgres_url")
    return str(request.param)


class Client:
    """One user's HTTP client: JSON in and out, jobs followed to their result."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers=bearer(token), timeout=60)

    def call(self, method: str, path: str, body: Any = None, *, status: int = 200, **params: Any) -> Any:
        answer = self.http.request(method, f"/api/v1{path}", json=body, params=params)
        assert answer.status_code == status, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def job(self, path: str, body: Any) -> Any:
        """POST long work (202 + Location), then wait for the job's result."""
        answer = self.http.post(f"/api/v1{path}", json=body)
        assert answer.status_code == 202, answer.text
        job = {"status": "queued"}
        for _ in range(10):  # the server holds each poll up to 30 s
            job = self.http.get(answer.headers["location"], params={"wait": 30}).json()
            if job["status"] not in ("queued", "running"):
                break
        assert job["status"] == "succeeded", job
        return job["result"]

    def phase(self, rollout: str) -> str:
        return str(self.call("GET", f"/rollouts/{rollout}", summary=True)["phase"])


def test_the_story_over_raw_http(
    database: str,
    sandbox: Sandbox,
    server_process: ServerProcess,
    demo_exporter: DemoExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    status_dir = sandbox.home / "demo" / "status"
    status_dir.parent.mkdir(parents=True)
    status_dir.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    doc = story_estate()
    (bootstrap := tmp_path / "bootstrap.yaml").write_text(json.dumps(doc))
    root_token = token_for(sandbox.environ, "root", estate=bootstrap)  # the admin's first token, on the machine
    server = server_process(sandbox.environ)
    root = Client(server.url, root_token)
    alex, bob, dana = (Client(server.url, token_for(sandbox.environ, u, g)) for u, g in USERS)
    for client in (root, alex, bob, dana):
        request.addfinalizer(client.http.close)

    # The admin points the gates at Prometheus through the API: the dry run shows the change, then it is made.
    doc["settings"]["prometheus"] = {"url": prometheus.url}
    documents = {"documents": [{"name": "estate.yaml", "content": json.dumps(doc)}]}
    diff = root.call("POST", "/estate:apply", {**documents, "dry_run": True})
    assert not diff["applied"] and diff["changes"], diff
    assert root.call("POST", "/estate:apply", {**documents, "dry_run": True}) == diff, "the dry run wrote nothing"
    assert root.call("POST", "/estate:apply", documents)["applied"]
    assert root.call("POST", "/estate:apply", {**documents, "dry_run": True})["changes"] == []

    deployed = dana.job("/deployments", {"envs": [f"shop/{e}" for e in ENVS]})["deployments"]
    assert {d["status"] for d in deployed} == {"succeeded"}
    for env in ENVS:
        prometheus.wait_for_metric("pg_errors_ratio", project="shop", env=env, version="1.0.0")

    # Alex reads the blast radius, starts 2.0.0; wave 1's gate sees ~25% errors and the wave is rolled back.
    start = {"module": "postgres", "version": "2.0.0", "plan": "story"}
    preview = alex.job("/rollouts:preview", start)
    assert [[e["env"] for e in w["envs"]] for w in preview["waves"]] == [
        ["shop/eph-1", "shop/eph-2"],
        ["shop/dev-1"],
        ["shop/prod-1"],
    ]
    assert all(e["change"] or e["destroy"] or e["add"] for w in preview["waves"] for e in w["envs"]), preview
    rollout = alex.job("/rollouts", {**start, "allow_destroy": True})["id"]
    wait_for(lambda: alex.phase(rollout) == "failed", 180)
    wave1 = alex.call("GET", f"/rollouts/{rollout}", wave="1")["waves"][0]
    assert verdicts(wave1["gates"][0]) == {"shop/eph-1": "failed", "shop/eph-2": "failed"}
    assert {e["status"] for e in wave1["envs"]} == {"rolled_back"}
    assert sandbox.status("shop", "eph-1")["version"] == "1.0.0"

    # The patch: retarget (a preflight job), rerun wave 1; the server's engine deploys and samples on its own.
    retargeted = alex.job(f"/rollouts/{rollout}/retarget", {"version": "2.0.1", "allow_destroy": True})
    assert retargeted["rollout"]["version"] == "2.0.1"
    alex.call("POST", f"/rollouts/{rollout}/rerun", {"wave": 1})
    wait_for(lambda: alex.phase(rollout) == "awaiting_promotion", 180)
    alex.call("POST", f"/rollouts/{rollout}/promote")
    wait_for(lambda: alex.phase(rollout) == "awaiting_promotion", 120)  # the 2 s bake of wave 2
    assert alex.call("POST", f"/rollouts/{rollout}/promote")["phase"] == "awaiting_approval"

    refusal = alex.call("POST", f"/rollouts/{rollout}/approve", status=409)
    assert "four-eyes" in refusal["detail"] and refusal["status"] == 409, refusal
    assert bob.call("POST", f"/rollouts/{rollout}/approve")["phase"] in ("running", "completed")
    wait_for(lambda: alex.phase(rollout) == "completed", 180)
    assert {e: sandbox.status("shop", e)["version"] for e in ENVS} == dict.fromkeys(ENVS, "2.0.1")

    trail = root.call("GET", "/audit", rollout=rollout, limit=100)["items"]
    assert [(a["actor"], a["action"], a["outcome"]) for a in trail if a["outcome"] != "ok"] == [
        ("alex", "rollout approve", "refused")
    ]
    assert {("alex", "rollout start"), ("alex", "rollout retarget"), ("bob", "rollout approve")} <= {
        (a["actor"], a["action"]) for a in trail
    }


USERS = (("alex", ()), ("bob", ()), ("dana", ("shop-team",)))
