"""Freezes and change windows end to end, on a real `estate server` deploying with real Terraform.

Freeze: root (admin) freezes production through the CLI in remote mode; alex's rollout deploys the ephemeral
wave and holds production, saying why and until when; a plain deploy into production is refused; alex may not
lift the freeze, root does, and the server's engine carries on by itself. Window: a wave whose change window
opens a few seconds after the rollout starts waits for it (its status says until when) and deploys no earlier.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from estate.testing.server import ProcessServer, bearer, token_for
from tests.support.cli import Cli, CliResult
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc, wait_for

pytestmark = pytest.mark.slow

ENVS = {"eph-1": "ephemeral", "prod-1": "production"}


def serve(
    sandbox: Sandbox, cli: Cli, server_process: ServerProcess, monkeypatch: pytest.MonkeyPatch, plan: dict[str, Any]
) -> tuple[ProcessServer, dict[str, str]]:
    """The estate with `plan`, every environment on 1.0.0, tokens for root and alex, and the server."""
    for name, value in sandbox.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}")
    sandbox.apply({**estate_doc(ENVS), "rollout_plans": [plan]})
    assert cli("deploy", *(f"shop/{e}" for e in ENVS), "-o", "json").code == 0
    tokens = {user: token_for(sandbox.environ, user) for user in ("root", "alex")}
    return server_process(sandbox.environ), tokens


def remote(
    cli: Cli, server: ProcessServer, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    monkeypatch.setenv("ESTATE_URL", server.url)

    def run(*args: str, who: str, code: int = 0) -> CliResult:
        monkeypatch.setenv("ESTATE_TOKEN", tokens[who])
        result = cli(*args)
        assert result.code == code, f"estate {' '.join(args)} exited {result.code}:\n{result.out}\n{result.err}"
        return result

    return run


def test_a_freeze_holds_production_and_plain_deploys_until_an_admin_lifts_it(
    sandbox: Sandbox, cli: Cli, server_process: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {
        "id": "two",
        "waves": [
            {"name": "eph", "select": {"env_type": "ephemeral"}, "auto_promote": True},
            {"name": "prod", "select": {"env_type": "production"}},
        ],
    }
    server, tokens = serve(sandbox, cli, server_process, monkeypatch, plan)
    run = remote(cli, server, tokens, monkeypatch)

    freeze = run(
        "freeze", "--env-type", "production", "--reason", "incident 4711", "--until", "1h", "-o", "json", who="root"
    ).json
    assert freeze["scope"] == "env_type:production" and freeze["created_by"] == "root"
    assert "needs role admin" in run("freeze", "--reason", "mine", who="alex", code=1).err

    view = run(
        "rollout", "start", "postgres", "2.0.1", "--plan", "two", "--no-preflight", "-o", "json", who="alex"
    ).json
    rollout = view["id"]
    assert view["phase"] == "running" and view["current_wave"] == 2, "the client returns once the wave is held"
    prod = view["waves"][1]
    assert "env type production frozen by root" in prod["hold"] and "incident 4711" in prod["hold"]
    assert prod["hold_until"] == freeze["until"].replace("+00:00", "Z") or prod["hold_until"].startswith(
        freeze["until"][:19]
    )
    assert view["waiting_for"].startswith("wave 2 to be released")
    assert [f["id"] for f in view["freezes"]] == [freeze["id"]]
    assert "frozen: env type production frozen by root" in run("rollout", "status", rollout, who="alex").out
    assert sandbox.status("shop", "eph-1")["version"] == "2.0.1"
    assert sandbox.status("shop", "prod-1")["version"] == "1.0.0"

    refused = run("deploy", "shop/prod-1", who="root", code=2)
    assert "shop/prod-1 is frozen: env type production frozen by root" in refused.err
    assert "needs role admin" in run("unfreeze", "--env-type", "production", who="alex", code=1).err
    lifted = run("unfreeze", "--env-type", "production", "-o", "json", who="root").json
    assert [f["id"] for f in lifted] == [freeze["id"]]
    lifted_at = datetime.now(UTC)

    with httpx.Client(base_url=server.url, headers=bearer(tokens["alex"]), timeout=30) as http:
        wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "completed", 60)
        assert http.get(f"/api/v1/rollouts/{rollout}").json()["freezes"] == []
        deployed = http.get("/api/v1/deployments", params={"env": "shop/prod-1"}).json()["items"][0]
    assert datetime.fromisoformat(deployed["created_at"]) >= lifted_at - timedelta(seconds=1)
    assert sandbox.status("shop", "prod-1")["version"] == "2.0.1"
    assert run("freezes", "-o", "json", who="alex").json == []


def test_a_wave_waits_for_its_change_window_and_deploys_no_earlier(
    sandbox: Sandbox, cli: Cli, server_process: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    opens = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
    closes = opens + timedelta(hours=1)
    window = {"days": ["mon-sun"], "start": f"{opens:%H:%M:%S}", "end": f"{closes:%H:%M:%S}", "timezone": "UTC"}
    plan = {"id": "windowed", "waves": [{"name": "all", "select": {}, "max_parallel": 2, "change_windows": [window]}]}
    server, tokens = serve(sandbox, cli, server_process, monkeypatch, plan)

    with httpx.Client(base_url=server.url, headers=bearer(tokens["alex"]), timeout=30) as http:
        body = {"module": "postgres", "version": "2.0.1", "plan": "windowed", "preflight": False}
        job = http.post("/api/v1/rollouts", json=body)
        started = http.get(job.headers["location"], params={"wait": 30}).json()
        assert started["status"] == "succeeded", started
        rollout = started["result"]["id"]

        def wave() -> dict[str, Any]:
            answer = http.get(f"/api/v1/rollouts/{rollout}").json()
            assert "waves" in answer, answer
            found: dict[str, Any] = answer["waves"][0]
            return found

        wait_for(lambda: bool(wave()["hold"]), 30)
        held = wave()
        assert datetime.now(UTC) < opens, "the machine was too slow to see the window closed"
        assert datetime.fromisoformat(held["hold_until"]) == opens
        assert f"the next opens {opens:%Y-%m-%d %H:%M:%S} UTC" in held["hold"]
        assert held["change_windows"] == [f"every day {opens:%H:%M:%S}-{closes:%H:%M:%S} UTC"]
        assert held["counts"] == {"pending": 2}
        wait_for(lambda: http.get(f"/api/v1/rollouts/{rollout}").json()["phase"] == "completed", 90)
        first = min(
            datetime.fromisoformat(
                http.get("/api/v1/deployments", params={"env": f"shop/{e}"}).json()["items"][0]["created_at"]
            )
            for e in ENVS
        )
    assert first >= opens, f"a deployment started at {first}, before the window opened at {opens}"
    assert {sandbox.status("shop", e)["version"] for e in ENVS} == {"2.0.1"}
