"""Two `estate server` processes on one PostgreSQL, no load balancer: a command sent to both at once is applied
once (one accepted, one refused by the state machine), and the wave it starts deploys each environment once,
with real Terraform."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from estate.testing.server import bearer, token_for
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_a_command_sent_to_either_server_is_applied_once(
    sandbox: Sandbox, fresh_postgres_url: str, server_process: ServerProcess
) -> None:
    sandbox.environ["ESTATE_DATABASE_URL"] = fresh_postgres_url
    doc = estate_doc({"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development"})
    doc["rollout_plans"] = [
        {
            "id": "two",
            "waves": [
                {"name": "eph", "select": {"env_type": "ephemeral"}},
                {"name": "dev", "select": {"env_type": "development"}},
            ],
        }
    ]
    sandbox.apply(doc)
    alex = bearer(token_for(sandbox.environ, "alex"))  # an operator (estate_doc's bindings)
    first, second = server_process(sandbox.environ), server_process(sandbox.environ)
    a = httpx.Client(base_url=first.url, headers=alex, timeout=60)
    b = httpx.Client(base_url=second.url, headers=alex, timeout=60)
    try:
        started = a.post(
            "/api/v1/rollouts", json={"module": "postgres", "version": "2.0.1", "plan": "two", "preflight": False}
        )
        job: dict[str, Any] = b.get(started.headers["location"], params={"wait": 30}).json()  # visible on both
        assert job["status"] == "succeeded", job
        rollout = job["result"]["id"]
        wait_for(lambda: b.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "awaiting_promotion", 180)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda c: c.post(f"/api/v1/rollouts/{rollout}/promote"), [a, b]))
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 409).json()
        assert refused["type"] == "urn:estate:problem:Refused"

        wait_for(lambda: a.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "completed", 180)
        deployed = b.get("/api/v1/deployments", params={"env": "shop/dev-1"}).json()["items"]
        assert [(d["kind"], d["status"]) for d in deployed] == [("deploy", "succeeded")], deployed
        assert sandbox.status("shop", "dev-1")["version"] == "2.0.1"
        accepted = a.get("/api/v1/audit", params={"rollout": rollout, "outcome": "ok"}).json()["items"]
        assert sum(1 for e in accepted if e["action"] == "rollout promote") == 1
    finally:
        a.close()
        b.close()
