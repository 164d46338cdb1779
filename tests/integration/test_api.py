"""The HTTP API served by uvicorn on a loopback port (a hosted App on SQLite; deployments by the fake runner):
problem documents for bad input (naming the field, changing nothing), paging, jobs, the event stream resumed
with Last-Event-ID, metrics, and the refusal to listen beyond loopback in plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from estate.app import Wiring
from estate.cli.app import main
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.server import ThreadServer, bearer, token_for
from tests.support.cli import EXAMPLE_ESTATE, REPO
from tests.support.server import EstateServer
from tests.support.terraform import Sandbox, estate_doc, wait_for

PROBLEM = "application/problem+json"


@dataclass
class Api:
    server: ThreadServer
    http: httpx.Client
    home: Path

    def apply_example(self) -> None:
        documents = [{"name": str(p), "content": p.read_text()} for p in sorted(EXAMPLE_ESTATE.glob("*.yaml"))]
        response = self.http.post("/api/v1/estate:apply", json={"documents": documents})
        assert response.status_code == 200, response.text

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but the audit trail (refused attempts are recorded there on purpose) and the
        tokens (each request notes when its token was last used)."""
        engine = create_engine(f"sqlite:///{self.home / 'estate.db'}")
        try:
            with engine.connect() as conn:
                tables = [t for t in inspect(conn).get_table_names() if t not in ("audit", "api_tokens")]
                return {t: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{t}"'))), key=repr) for t in tables}
        finally:
            engine.dispose()

    def job(self, response: httpx.Response) -> dict[str, Any]:
        """Follow a 202 job to its end."""
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        while True:
            job: dict[str, Any] = self.http.get(location, params={"wait": 5}).json()
            if job["status"] in ("succeeded", "failed", "interrupted"):
                return job


@pytest.fixture
def api(tmp_path: Path, estate_server: EstateServer) -> Iterator[Api]:
    home = tmp_path / "estate"
    environ = {"ESTATE_HOME": str(home)}
    wiring = Wiring(runner=lambda store, _settings: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)))
    root = token_for(environ, "root", estate=EXAMPLE_ESTATE)  # the bootstrap admin (bound in examples/estate)
    server = estate_server(environ, wiring, max_body_bytes=64 * 1024)
    with httpx.Client(base_url=server.url, headers=bearer(root), timeout=30) as http:
        yield Api(server, http, home)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(api: Api) -> None:
    api.apply_example()
    before = api.dump()
    http = api.http
    malformed = http.post(
        "/api/v1/deployments", content=b'{"envs": ["checkout/eph-1"', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in problem(malformed, 400)["detail"]
    unknown = problem(http.post("/api/v1/deployments", json={"envs": ["checkout/eph-1"], "planonly": True}), 422)
    assert [e["path"] for e in unknown["errors"]] == ["body.planonly"]
    wrong = problem(http.post("/api/v1/deployments", json={"envs": ["checkout/eph-1"], "plan_only": "yes"}), 422)
    assert [e["path"] for e in wrong["errors"]] == ["body.plan_only"]
    coerced = problem(http.post("/api/v1/environments/checkout/eph-1:rollback", json={"to": "3"}), 422)
    assert [e["path"] for e in coerced["errors"]] == ["body.to"]
    traversal = problem(http.post("/api/v1/deployments", json={"envs": ["../etc/passwd"]}), 422)
    assert traversal["errors"][0]["path"] == "body.envs[0]"
    dotted = problem(http.get("/api/v1/rollouts/.."), 404)  # normalized away by the client: no such route
    assert dotted["type"] == "about:blank"
    encoded = problem(http.get("/api/v1/modules/..%2F..%2Fetc/usage"), 404)
    assert encoded["status"] == 404
    bad_id = problem(http.get("/api/v1/rollouts/UP..x"), 422)
    assert bad_id["errors"][0]["path"] == "path.rollout_id"
    huge = {"documents": [{"name": "estate.yaml", "content": "x" * 100_000}]}
    assert "exceeds" in problem(http.post("/api/v1/estate:apply", json=huge), 413)["detail"]
    chunked = http.post(
        "/api/v1/estate:apply",
        content=iter([b'{"documents": [{"name": "a", "content": "', b"x" * 70_000, b'"}]}']),
        headers={"content-type": "application/json"},
    )
    problem(chunked, 413)
    invalid_yaml = {"documents": [{"name": "/srv/estate.yaml", "content": "projects:\n  - id: Bad_Id\n"}]}
    config = problem(http.post("/api/v1/estate:apply", json=invalid_yaml), 422)
    assert config["type"] == "urn:estate:problem:ConfigError"
    assert any(
        e["file"] == "/srv/estate.yaml" and e["line"] == 2 and e["path"].startswith("projects[0]")
        for e in config["errors"]
    )
    missing = problem(http.get("/api/v1/rollouts/postgres-9"), 404)
    assert missing["type"] == "urn:estate:problem:NotFoundError" and missing["hint"] == "see `estate rollout list`"
    assert api.dump() == before, "a refused request changed the store"


def test_lists_paginate_and_cursors_cover_everything_once(api: Api) -> None:
    api.apply_example()
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"after": after} if after else {})
        page = api.http.get("/api/v1/environments", params=params).json()
        seen += [e["ref"] for e in page["items"]]
        after = page["next_cursor"]
        if after is None:
            break
    everything = api.http.get("/api/v1/environments", params={"limit": 1000}).json()
    assert seen == [e["ref"] for e in everything["items"]] and len(seen) == 16
    problem(api.http.get("/api/v1/environments", params={"after": "nobody/nowhere"}), 400)


def read_events(http: httpx.Client, *, last: int | None, count: int) -> list[dict[str, Any]]:
    """`count` events of the stream (resumed after `last` with Last-Event-ID, else from the first), then hang up."""
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    params = {} if last is not None else {"after": 0}
    received: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    with http.stream("GET", "/api/v1/events", headers=headers, params=params, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event["id"] = int(line.removeprefix("id: "))
            elif line.startswith("event: "):
                event["kind"] = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event["data"] = json.loads(line.removeprefix("data: "))
            elif not line and "data" in event:
                received.append(event)
                event = {}
                if len(received) == count:
                    break
    return received


def test_a_rollout_over_http_and_its_events_resumed_without_loss_or_repeat(api: Api) -> None:
    api.apply_example()
    http = api.http
    published = http.post(
        "/api/v1/modules/postgres/versions",
        json={"version": "2.0.0", "source": str(REPO / "examples/modules/postgres/v2.0.0")},
    )
    assert published.status_code == 201, published.text
    body = {"module": "postgres", "version": "2.0.0", "plan": "standard", "preflight": False}
    job = api.job(http.post("/api/v1/rollouts", json=body))
    assert job["status"] == "succeeded", job
    rollout = job["result"]["id"]
    # Nobody follows it: the server's engine deploys wave 1 and runs its gate (Prometheus is not there: halted).
    wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "halted", 60)
    refused = problem(http.post(f"/api/v1/rollouts/{rollout}/promote"), 409)
    assert refused["type"] == "urn:estate:problem:Refused" and "halted" in refused["detail"]
    stored = _stored_events(api.home)
    first = read_events(http, last=None, count=5)
    second = read_events(http, last=first[-1]["id"], count=7)
    rest = read_events(http, last=second[-1]["id"], count=stored - 12)
    ids = [e["id"] for e in first + second + rest]
    assert ids == sorted(set(ids)) and len(ids) == stored, "an event was lost or came twice across reconnects"
    kinds = {e["kind"] for e in first + second + rest}
    assert {"rollout", "wave", "gate", "env", "deployment", "command"} <= kinds
    refusals = [e["data"] for e in rest if e["kind"] == "command" and e["data"]["after"] == "refused"]
    assert refusals and refusals[-1]["before"] == "promote" and refusals[-1]["actor"] == "root"


def _stored_events(home: Path) -> int:
    engine = create_engine(f"sqlite:///{home / 'estate.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_deploys_run_as_jobs_with_real_terraform_and_progress(sandbox: Sandbox, estate_server: EstateServer) -> None:
    sandbox.apply(estate_doc({"eph-1": "ephemeral", "eph-2": "ephemeral"}))
    token = token_for(sandbox.environ, "alex", ("team",))
    server = estate_server(sandbox.environ)
    with httpx.Client(base_url=server.url, headers=bearer(token), timeout=30) as http:
        api = Api(server, http, sandbox.home)
        job = api.job(http.post("/api/v1/deployments", json={"envs": ["shop/eph-1", "shop/eph-2"]}))
        assert job["status"] == "succeeded" and job["kind"] == "deploy" and job["actor"] == "alex", job
        assert job["progress"]["total"] == 2
        assert sorted(d["item"] for d in job["progress"]["done"]) == ["shop/eph-1", "shop/eph-2"]
        assert [d["status"] for d in job["result"]["deployments"]] == ["succeeded", "succeeded"]
        assert sandbox.status("shop", "eph-1")["version"] == "1.0.0", "Terraform applied it"
        first = job["result"]["deployments"][0]["id"]
        logs = http.get(f"/api/v1/deployments/{first}/logs").json()
        assert logs["done"] and any("Apply complete" in e["text"] for e in logs["events"])
        with http.stream("GET", f"/api/v1/deployments/{first}/logs/stream") as stream:
            lines = list(stream.iter_lines())
        assert sum(1 for line in lines if line == "event: log") == len(logs["events"])
        assert lines[-3:-1] == ["event: end", lines[-2]] and '"status":"succeeded"' in lines[-2]
        failed = api.job(http.post("/api/v1/deployments", json={"envs": ["shop/nowhere"]}))
        assert failed["status"] == "failed" and failed["error"]["category"] == "NotFoundError"


def test_a_dead_servers_jobs_are_marked_interrupted(api: Api) -> None:
    # A job whose server died (its holder is a process that no longer exists) must not stay running.
    engine = create_engine(f"sqlite:///{api.home / 'estate.db'}")
    now = datetime.now(UTC).isoformat()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (kind, status, actor, request, progress, holder, created_at, updated_at) "
                "VALUES ('drift', 'running', 'bob', '{}', '{}', :holder, :now, :now)"
            ),
            {"holder": f"{__import__('socket').gethostname()}:999999999", "now": now},
        )
        orphan = conn.execute(text("SELECT max(id) FROM jobs")).scalar_one()
    engine.dispose()
    api.server.app.jobs.recover()
    found = api.http.get(f"/api/v1/jobs/{orphan}").json()
    assert found["status"] == "interrupted" and "server running this job stopped" in found["error"]["message"]


def test_metrics_export_wave_membership_and_requests(api: Api) -> None:
    api.apply_example()
    api.http.post(
        "/api/v1/modules/postgres/versions",
        json={"version": "2.0.0", "source": str(REPO / "examples/modules/postgres/v2.0.0")},
    )
    body = {"module": "postgres", "version": "2.0.0", "plan": "standard", "preflight": False}
    rollout = api.job(api.http.post("/api/v1/rollouts", json=body))["result"]["id"]
    wait_for(lambda: api.http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "halted", 60)
    text_ = api.http.get("/metrics").text
    assert (
        f'estate_rollout_environment_info{{env="eph-1",module="postgres",project="checkout",rollout="{rollout}",'
        'state="succeeded",version="2.0.0",wave="1"} 1.0'
    ) in text_
    prod = f'env="prod-eu",module="postgres",project="checkout",rollout="{rollout}",state="pending",version="1.0.0"'
    assert f'estate_rollout_environment_info{{{prod},wave="4"}} 1.0' in text_
    assert 'estate_rollouts{phase="halted"} 1.0' in text_
    assert f'estate_rollout_environments{{rollout="{rollout}",state="succeeded"}} 5.0' in text_
    assert 'estate_deployments{status="succeeded"} 5.0' in text_
    assert 'estate_deployment_duration_seconds_count{kind="deploy",status="succeeded"} 5.0' in text_
    assert 'estate_gate_evaluations{result="inconclusive"} 1.0' in text_
    assert "estate_engine_turn_lag_seconds 0.0" in text_
    assert 'estate_http_requests_total{method="POST",route="/api/v1/rollouts",status="202"} 1.0' in text_


def test_the_openapi_document_describes_responses_and_problems(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    status = doc["paths"]["/api/v1/rollouts/{rollout_id}"]["get"]["responses"]
    assert status["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RolloutView"}
    assert status["404"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/ProblemView"}
    assert {"ProblemView", "FieldProblem", "JobView", "EventView"} <= set(doc["components"]["schemas"])


def test_the_server_refuses_plain_http_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 over plain HTTP" in err and "--tls-cert" in err
