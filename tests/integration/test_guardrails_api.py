"""Guardrails over the real API (uvicorn on loopback, a hosted App on SQLite, deployments by the fake runner):
the Alertmanager webhook authenticates like every request (bearer, or basic auth with the token as password; a
wrong credential is 401 and changes nothing) and a matching alert halts the wave within two engine turns;
freezes and version lifecycle need an admin, are audited, and show in every status."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from estate.app import Wiring
from estate.app.audit import AuditFilter
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.server import AT_THE_MACHINE, ThreadServer, bearer, token_for
from tests.integration.test_access_api import dump
from tests.support.server import EstateServer
from tests.support.terraform import estate_doc, wait_for

ENVS = {"eph-1": "ephemeral", "eph-2": "ephemeral", "prod-1": "production"}
PLAN = {
    "id": "guarded",
    "alert_selector": 'severity=~"critical|page"',
    "waves": [
        {"name": "eph", "select": {"env_type": "ephemeral"}, "max_parallel": 2, "gates": [{"bake": "10m"}]},
        {"name": "prod", "select": {"env_type": "production"}},
    ],
}


@dataclass
class Guarded:
    server: ThreadServer
    home: Path
    tokens: dict[str, str]

    def http(self, user: str | None = None, **headers: str) -> httpx.Client:
        auth = bearer(self.tokens[user]) if user else {}
        return httpx.Client(base_url=self.server.url, headers={**auth, **headers}, timeout=30)


@pytest.fixture
def guarded(tmp_path: Path, estate_server: EstateServer) -> Iterator[Guarded]:
    doc = {**estate_doc(ENVS), "rollout_plans": [PLAN]}
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(doc))
    environ = {"ESTATE_HOME": str(tmp_path / "home")}
    tokens = {"root": token_for(environ, "root", estate=path)}
    tokens |= {user: token_for(environ, user) for user in ("alex", "vera")}
    wiring = Wiring(runner=lambda store, _s: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)))
    yield Guarded(estate_server(environ, wiring), tmp_path / "home", tokens)


def payload(
    env: str, *, status: str = "firing", severity: str = "critical", starts: str = "2027-01-04T10:00:00Z"
) -> dict[str, Any]:
    labels = {"alertname": "PgErrorsHigh", "project": "shop", "env": env, "severity": severity, "job": "pg"}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "errors above 5%"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=pg_errors_ratio+%3E+0.05",
        "fingerprint": f"fp-{env}",
    }
    return {"version": "4", "status": status, "receiver": "estate", "alerts": [alert], "groupKey": "{}:{}", "x": 1}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def start_rollout(g: Guarded) -> str:
    app = g.server.app
    rollout = app.rollouts.start(AT_THE_MACHINE, "postgres", "2.0.0", "guarded", preflight=False, follow=False).id
    with g.http("vera") as http:
        wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["waves"][0]["phase"] == "verifying", 30)
    return rollout


def test_a_wrong_webhook_credential_is_401_and_changes_nothing(guarded: Guarded) -> None:
    rollout = start_rollout(guarded)
    before = dump(guarded.home)
    for headers in (
        {},
        bearer("est_0000000000000000_forged"),
        basic("alex", "not-a-token"),
        basic("mallory", guarded.tokens["alex"]),  # the right token under another name
    ):
        with guarded.http(**headers) as http:
            answer = http.post("/api/v1/hooks/alertmanager", json=payload("eph-1"))
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert dump(guarded.home) == before, "a refused notification changes nothing"
    with guarded.http("vera") as http:  # a viewer is authenticated but may not stop the line
        assert http.post("/api/v1/hooks/alertmanager", json=payload("eph-1")).status_code == 403
        assert http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "running"


def test_a_matching_alert_halts_the_wave_and_is_kept_as_evidence(guarded: Guarded) -> None:
    rollout = start_rollout(guarded)
    with guarded.http(**basic("alex", guarded.tokens["alex"])) as http:  # Alertmanager's basic_auth
        quiet = http.post("/api/v1/hooks/alertmanager", json=payload("eph-1", severity="info")).json()
        assert quiet["delivered"] == [] and "selects alerts with severity=~" in quiet["ignored"][0]["reason"]
        resolved = http.post("/api/v1/hooks/alertmanager", json=payload("eph-1", status="resolved")).json()
        assert (resolved["firing"], resolved["delivered"]) == (0, [])
        stray = http.post("/api/v1/hooks/alertmanager", json=payload("nowhere")).json()
        assert stray["ignored"][0]["reason"] == "no active rollout holds it"
        receipt = http.post("/api/v1/hooks/alertmanager", json=payload("eph-2")).json()
        assert receipt["delivered"] == [
            {
                "rollout": rollout,
                "env": "shop/eph-2",
                "alert": "PgErrorsHigh",
                "labels": payload("eph-2")["alerts"][0]["labels"],
            }
        ]
        wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "halted", 10)
        view = http.get(f"/api/v1/rollouts/{rollout}").json()
    assert view["reason"] == "alert PgErrorsHigh firing for shop/eph-2"
    (kept,) = view["waves"][0]["alerts"]
    assert (
        kept["name"] == "PgErrorsHigh" and kept["effect"] == "failed_wave" and kept["labels"]["severity"] == "critical"
    )
    assert kept["starts_at"].startswith("2027-01-04T10:00:00") and kept["generator_url"].endswith("%3E+0.05")
    entries = guarded.server.app.audit.entries(AuditFilter(actor="alex"))
    assert [e.action for e in entries][:1] == ["alertmanager notification"]
    with guarded.http("alex") as http:  # the same firing, notified again: it already acted
        http.post("/api/v1/hooks/alertmanager", json=payload("eph-2"))
        assert len(http.get(f"/api/v1/rollouts/{rollout}").json()["waves"][0]["alerts"]) == 1


def test_freezes_and_lifecycle_need_an_admin_and_show_everywhere(guarded: Guarded) -> None:
    rollout = start_rollout(guarded)
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = {"reason": "incident 4711", "env_type": "production", "until": until}
    with guarded.http("alex") as alex, guarded.http("root") as root:
        denied = alex.post("/api/v1/freezes", json=body)
        assert denied.status_code == 403 and "needs role admin" in denied.json()["detail"]
        assert root.post("/api/v1/freezes", json={**body, "until": "2027-01-04T10:00"}).status_code == 422
        assert root.post("/api/v1/freezes", json={**body, "env_type": "nowhere"}).status_code == 404
        made = root.post("/api/v1/freezes", json=body)
        assert made.status_code == 201, made.text
        freeze = made.json()
        assert freeze["scope"] == "env_type:production" and freeze["created_by"] == "root"
        assert [f["id"] for f in alex.get(f"/api/v1/rollouts/{rollout}").json()["freezes"]] == [freeze["id"]]
        assert [f["id"] for f in alex.get("/api/v1/freezes").json()] == [freeze["id"]]
        assert alex.post("/api/v1/freezes:lift", json={"id": freeze["id"]}).status_code == 403
        assert [f["id"] for f in root.post("/api/v1/freezes:lift", json={"env_type": "production"}).json()] == [
            freeze["id"]
        ]
        assert root.post("/api/v1/freezes:lift", json={}).status_code == 404, "no estate-wide freeze to lift"

        path = "/api/v1/modules/postgres/versions/2.0.1/mark-defective"
        assert alex.post(path, json={"reason": "corrupts indexes"}).status_code == 403
        assert root.post(path, json={"reason": ""}).status_code == 422
        marked = root.post(path, json={"reason": "corrupts indexes"}).json()
        assert (marked["lifecycle"], marked["lifecycle_reason"], marked["lifecycle_by"]) == (
            "defective",
            "corrupts indexes",
            "root",
        )
        retarget = alex.post(f"/api/v1/rollouts/{rollout}/retarget", json={"version": "2.0.1"})
        assert retarget.status_code == 409 and "postgres 2.0.1 is defective" in retarget.json()["detail"]
        restored = root.post("/api/v1/modules/postgres/versions/2.0.1/restore", json={"reason": "false alarm"})
        assert restored.json()["lifecycle"] == "published"
        deprecated = root.post("/api/v1/modules/postgres/versions/1.0.0/deprecate", json={"reason": "EOL"}).json()
        assert deprecated["lifecycle"] == "deprecated"
        usage = alex.get("/api/v1/modules/postgres/usage").json()
        assert usage["flagged"] == ["shop/prod-1"], "eph-1 and eph-2 are on 2.0.0 already"
        (flag,) = next(e for e in alex.get("/api/v1/environments").json()["items"] if e["id"] == "prod-1")["flagged"]
        assert flag == {"module": "postgres", "version": "1.0.0", "lifecycle": "deprecated", "lifecycle_reason": "EOL"}
    actions = [e.action for e in guarded.server.app.audit.entries(AuditFilter(actor="root"))]
    for action in ("freeze", "unfreeze", "module mark-defective", "module restore", "module deprecate"):
        assert action in actions
    denied_entries = guarded.server.app.audit.entries(AuditFilter(actor="alex", outcome="denied"))
    assert {e.action for e in denied_entries} >= {"freeze", "unfreeze", "module mark-defective"}
