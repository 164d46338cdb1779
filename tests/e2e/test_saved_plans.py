"""A rollout applies the plan its preflight saved, with the real Terraform: once reviewed, never planned again;
and when the environment's state moved since (Terraform calls the saved plan stale), it plans afresh and says so."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

ENVS = {"eph-1": "ephemeral", "eph-2": "ephemeral"}
PLAN = {"id": "one", "waves": [{"name": "eph", "select": {"env_type": "ephemeral"}, "max_parallel": 2}]}


@pytest.fixture
def world(sandbox: Sandbox, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name, value in sandbox.environ.items():  # `cli` and `sandbox` both set ESTATE_HOME: the sandbox wins
        monkeypatch.setenv(name, value)
    doc = estate_doc(ENVS)
    doc["rollout_plans"] = [PLAN]
    sandbox.apply(doc)
    assert world_deploy(cli, "shop/eph-1")["status"] == "succeeded"  # eph-2 was never deployed
    return cli


def world_deploy(cli: Cli, env: str) -> Any:
    done = cli("deploy", env, "-o", "json")
    assert done.code == 0, done.err
    data = done.json
    return data[0] if isinstance(data, list) else data


def _rollout_deploys(cli: Cli) -> dict[str, Any]:
    listed = cli("deployment", "list", "-o", "json").json
    ids = [d["id"] for d in listed if d["kind"] == "deploy" and (d.get("triggered_by") or "").startswith("rollout:")]
    shown = [cli("deployment", "show", str(i), "-o", "json").json for i in ids]
    return {d["env"]: d for d in shown}


def _preflight_plans(cli: Cli) -> dict[str, int]:
    listed = cli("deployment", "list", "-o", "json").json
    return {d["env"]: d["id"] for d in listed if d["kind"] == "plan"}


def _steps(cli: Cli, deployment: int) -> str:
    return cli("deployment", "logs", str(deployment)).out


def test_a_rollout_applies_each_saved_preflight_plan_without_planning_again(world: Cli, sandbox: Sandbox) -> None:
    started = world("rollout", "start", "postgres", "2.0.0", "--plan", "one", "--allow-destroy", "-o", "json")
    assert started.code == 0, started.err
    plans = _preflight_plans(world)
    deploys = _rollout_deploys(world)
    assert set(deploys) == {"shop/eph-1", "shop/eph-2"}
    for env, dep in deploys.items():
        assert dep["status"] == "succeeded", dep
        assert dep["plan_source"] == f"the saved plan of deployment {plans[env]}"
        assert dep["plan"]["add"] == 1, "the reviewed plan is the record of what was applied"
        log = _steps(world, dep["id"])
        assert "applying the saved plan" in log and "terraform plan" not in log
        assert sandbox.status("shop", env.split("/")[1])["version"] == "2.0.0"
    assert not list((sandbox.home / "plans").glob("*.tfplan")), "an applied plan is not kept"


def test_a_stale_saved_plan_is_planned_afresh_and_says_why(world: Cli, sandbox: Sandbox) -> None:
    """eph-1: Terraform refuses the saved plan (its state changed outside Estate: a taint); eph-2: Estate does
    not offer it (Estate deployed it after the plan; Terraform cannot tell when a plan was made from no state)."""
    started = world("rollout", "start", "postgres", "2.0.0", "--plan", "one", "--allow-destroy", "--detach")
    assert started.code == 0, started.err
    plans = _preflight_plans(world)
    taint = subprocess.run(
        [sandbox.environ["ESTATE_TF_BINARY"], "taint", "-no-color", "module.db.null_resource.status"],
        cwd=sandbox.home / "work" / "shop" / "eph-1",
        env={**sandbox.environ, "ESTATE_HOME": str(sandbox.home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert taint.returncode == 0, taint.stderr
    redeployed = world_deploy(world, "shop/eph-2")["id"]
    done = world("engine", "run", "postgres-1", "--once")
    assert done.code == 0, done.err
    deploys = _rollout_deploys(world)
    refused, skipped = deploys["shop/eph-1"], deploys["shop/eph-2"]
    assert refused["status"] == skipped["status"] == "succeeded"
    assert refused["plan_source"] == (
        f"planned by the apply itself: the saved plan of deployment {plans['shop/eph-1']} was stale"
        " (the state changed since)"
    )
    assert "Saved plan is stale" in _steps(world, refused["id"])
    assert skipped["plan_source"] == (
        f"planned by the apply itself: deployment {redeployed} ran after deployment {plans['shop/eph-2']} planned it"
    )
    for env in ENVS:
        assert sandbox.status("shop", env)["version"] == "2.0.0"
