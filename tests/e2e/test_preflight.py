"""Preflight against the real Terraform: the blast radius per wave, and destructive changes that block a
start (changing nothing) unless allowed, or only warn when the plan says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

ENVS = {"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development"}


def _plan(plan_id: str, destructive: str = "block") -> dict[str, Any]:
    return {
        "id": plan_id,
        "destructive": destructive,
        "waves": [
            {"name": "eph", "select": {"env_type": "ephemeral"}, "max_parallel": 2},
            {"name": "dev", "select": {"env_type": "development"}},
        ],
    }


@pytest.fixture
def world(sandbox: Sandbox, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name, value in sandbox.environ.items():  # `cli` and `sandbox` both set ESTATE_HOME: the sandbox wins
        monkeypatch.setenv(name, value)
    doc = estate_doc(ENVS)
    doc["rollout_plans"] = [_plan("strict"), _plan("lenient", "warn")]
    sandbox.apply(doc)
    assert cli("deploy", "shop/eph-1").code == 0  # eph-2 and dev-1 were never deployed
    return cli


def test_preview_shows_per_wave_counts_and_every_destructive_address(world: Cli) -> None:
    preview = world("rollout", "preview", "postgres", "2.0.0", "--plan", "strict", "-o", "json").json
    eph, dev = preview["waves"]
    by_env = {e["env"]: e for e in eph["envs"]}
    assert by_env["shop/eph-1"]["destructive"] == ["replace module.db.null_resource.status"]
    assert (by_env["shop/eph-1"]["add"], by_env["shop/eph-1"]["destroy"]) == (1, 1)
    assert (by_env["shop/eph-2"]["add"], by_env["shop/eph-2"]["destructive"]) == (1, [])
    assert [e["env"] for e in dev["envs"]] == ["shop/dev-1"]
    assert preview["destructive"] == ["shop/eph-1: replace module.db.null_resource.status"]
    assert world("rollout", "list", "-o", "json").json == [], "a preview starts nothing"


def test_destructive_changes_block_the_start_and_change_nothing(world: Cli) -> None:
    refused = world("rollout", "start", "postgres", "2.0.0", "--plan", "strict")
    assert refused.code == 2
    assert "preflight found 1 destructive change(s) in 1 environment(s)" in refused.err
    assert "replace module.db.null_resource.status" in refused.err and "--allow-destroy" in refused.err
    assert world("rollout", "list", "-o", "json").json == []
    usage = world("module", "usage", "postgres", "-o", "json").json
    assert {e["version"] for e in usage["environments"]} == {"1.0.0"}, "no pin was written"
    started = world("rollout", "start", "postgres", "2.0.0", "--plan", "strict", "--allow-destroy", "-o", "json")
    assert started.code == 0 and started.json["waves"][0]["phase"] == "awaiting_promotion"


def test_a_plan_that_only_warns_starts_with_a_warning(world: Cli) -> None:
    started = world("rollout", "start", "postgres", "2.0.0", "--plan", "lenient", "-o", "json")
    assert started.code == 0
    assert "warning: destructive (plan says warn): shop/eph-1: replace module.db.null_resource.status" in (
        " ".join(started.err.split())
    )
