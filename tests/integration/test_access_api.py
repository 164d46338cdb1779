"""Access over the real API (uvicorn on loopback, a hosted App on SQLite, deployments by the fake runner): every
role-by-action pair, allowed ones succeed and denied ones are 403 naming the role needed and change nothing;
no credential, a bad or a revoked one is 401 with WWW-Authenticate (revocation effective on the very next
request); an address that keeps failing gets 429."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from estate.app import Wiring
from estate.app.audit import AuditFilter
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.server import AT_THE_MACHINE, ThreadServer, bearer, token_for
from tests.support.cli import EXAMPLE_ESTATE, REPO
from tests.support.server import EstateServer
from tests.support.terraform import Sandbox, wait_for

ROLES = ("viewer", "deployer", "operator", "approver", "admin")
MATRIX_PLAN = """
rollout_plans:
  - id: matrix
    waves:
      - {name: eph, select: {env_type: ephemeral}, gates: [{approval: {role: approver}}]}
      - {name: rest, select: {env_type: [development, staging, production]}}
"""
#: action -> the roles allowed to do it (admin implies every role)
ALLOWED = {
    "read": {"viewer", "deployer", "operator", "approver", "admin"},
    "deploy": {"deployer", "admin"},
    "approve": {"approver", "admin"},
    "pause": {"operator", "admin"},
    "publish": {"admin"},
    "create token": {"admin"},
    "apply": {"admin"},
}


def estate_files(tmp: Path) -> Path:
    """The example estate, the matrix plan, and one user per role (`<role>-user`), each bound everywhere."""
    folder = tmp / "estate"
    folder.mkdir(parents=True)
    for f in EXAMPLE_ESTATE.glob("*.yaml"):
        if f.name != "access.yaml":
            (folder / f.name).write_text(f.read_text().replace("../modules/", f"{EXAMPLE_ESTATE.parent / 'modules'}/"))
    bindings = "\n".join(f"  - {{role: {r}, subjects: [{r}-user]}}" for r in ROLES)
    (folder / "access.yaml").write_text(f"access:\n{bindings}\n  - {{role: admin, subjects: [root]}}\n")
    (folder / "matrix.yaml").write_text(MATRIX_PLAN)
    return folder


def dump(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit trail (denials are recorded there) and the tokens' last use."""
    engine = create_engine(f"sqlite:///{home / 'estate.db'}")
    try:
        with engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t not in ("audit", "api_tokens")]
            return {t: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{t}"'))), key=repr) for t in tables}
    finally:
        engine.dispose()


def request(http: httpx.Client, action: str, rollout: str, folder: Path) -> httpx.Response:
    version = REPO / "examples/modules/postgres/v2.0.1"
    documents = [{"name": str(p), "content": p.read_text()} for p in sorted(folder.glob("*.yaml"))]
    calls = {
        "read": lambda: http.get("/api/v1/environments"),
        "deploy": lambda: http.post("/api/v1/deployments", json={"envs": ["checkout/eph-1"], "plan_only": True}),
        "approve": lambda: http.post(f"/api/v1/rollouts/{rollout}/approve", json={}),
        "pause": lambda: http.post(f"/api/v1/rollouts/{rollout}/pause"),
        "publish": lambda: http.post(
            "/api/v1/modules/postgres/versions", json={"version": "2.0.1", "source": str(version)}
        ),
        "create token": lambda: http.post("/api/v1/tokens", json={"user": "newcomer"}),
        "apply": lambda: http.post("/api/v1/estate:apply", json={"documents": documents, "dry_run": True}),
    }
    return calls[action]()


@pytest.fixture
def start(tmp_path: Path, estate_server: EstateServer, sandbox: Sandbox) -> Iterator[Any]:
    def started(role: str) -> tuple[ThreadServer, httpx.Client, Path, str, Path]:
        home, folder = tmp_path / role / "home", estate_files(tmp_path / role)
        environ = {**sandbox.environ, "ESTATE_HOME": str(home)}  # real Terraform for deploys (plan only)
        token = token_for(environ, f"{role}-user", estate=folder)
        wiring = Wiring(runner=lambda store, _s: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)))
        server = estate_server(environ, wiring)
        app = server.app
        app.inventory.publish(AT_THE_MACHINE, "postgres", "2.0.0", str(REPO / "examples/modules/postgres/v2.0.0"))
        rollout = app.rollouts.start(AT_THE_MACHINE, "postgres", "2.0.0", "matrix", preflight=False, follow=False).id
        http = httpx.Client(base_url=server.url, headers=bearer(token), timeout=30)
        # The server's engine brings wave 1 to its approval gate.
        wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "awaiting_approval", 30)
        return server, http, home, rollout, folder

    clients: list[httpx.Client] = []

    def tracked(role: str) -> tuple[ThreadServer, httpx.Client, Path, str, Path]:
        found = started(role)
        clients.append(found[1])
        return found

    yield tracked
    for c in clients:
        c.close()


def settle(http: httpx.Client, answer: httpx.Response, rollout: str) -> None:
    """Let what an allowed request started finish, so the next one's store comparison sees only itself."""
    if answer.status_code == 202:
        job = http.get(answer.headers["location"], params={"wait": 30}).json()
        assert job["status"] == "succeeded", job
    wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] != "running", 30)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_do_exactly_what_its_role_allows(role: str, start: Any) -> None:
    _server, http, home, rollout, folder = start(role)
    for action, allowed_roles in ALLOWED.items():
        before = dump(home)
        answer = request(http, action, rollout, folder)
        if role in allowed_roles:
            assert answer.status_code in (200, 201, 202), f"{role} {action}: {answer.status_code} {answer.text}"
            settle(http, answer, rollout)
            continue
        assert answer.status_code == 403, f"{role} {action}: {answer.status_code} {answer.text}"
        problem = answer.json()
        assert problem["type"] == "urn:estate:problem:Forbidden" and "that needs role" in problem["detail"]
        assert dump(home) == before, f"{role} {action}: a denied request changed the store"
    denied = http.get("/api/v1/audit", params={"outcome": "denied"})
    if role == "viewer":
        assert denied.status_code == 200 and len(denied.json()["items"]) == len(ALLOWED) - 1


def test_without_a_valid_credential_every_request_is_401_and_a_revoked_token_fails_at_once(
    start: Any, tmp_path: Path
) -> None:
    server, http, _home, _rollout, _folder = start("admin")
    bare = httpx.Client(base_url=server.url, timeout=30)
    for headers in ({}, {"Authorization": "Bearer est_0000000000000000_" + "A" * 43}, {"Authorization": "Basic eDp5"}):
        answer = bare.get("/api/v1/environments", headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Bearer realm="estate"'
    assert bare.get("/metrics").status_code == 401, "metrics are not public either"
    assert bare.get("/healthz").status_code == 200, "liveness needs no credential"
    issued = http.post("/api/v1/tokens", json={"user": "bob"}).json()
    bob = httpx.Client(base_url=server.url, headers=bearer(issued["token"]), timeout=30)
    assert bob.get("/api/v1/whoami").json()["subject"] == "bob"
    assert http.post(f"/api/v1/tokens/{issued['id']}/revoke").json()["state"] == "revoked"
    refused = bob.get("/api/v1/whoami")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert issued["token"] not in refused.text
    assert "token" not in http.get("/api/v1/tokens").json()[0], "a listed token shows no secret"
    assert http.get("/api/v1/environments", headers={"Estate-Actor": "bob"}).status_code == 400
    bob.close()
    bare.close()


def test_an_address_that_keeps_failing_to_authenticate_is_slowed_down(
    tmp_path: Path, estate_server: EstateServer
) -> None:
    server = estate_server({"ESTATE_HOME": str(tmp_path / "home")}, auth_failures_per_minute=3)
    bad = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer nope"}, timeout=30)
    codes = [bad.get("/api/v1/environments").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    throttled = bad.get("/api/v1/environments")
    assert int(throttled.headers["retry-after"]) >= 1 and "too many failed" in throttled.json()["detail"]
    denied = server.app.audit.entries(AuditFilter(outcome="denied"))
    assert len(denied) == 3 and all(e.actor == "anonymous" and e.action == "authenticate" for e in denied)
    bad.close()
