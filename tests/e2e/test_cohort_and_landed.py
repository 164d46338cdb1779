"""The compare gate and the landed check on real Prometheus data, the `estate` CLI driving real Terraform.

Compare: a canary wave (two ephemerals) is judged against the three ephemerals the rollout has not reached.
The broken 2.0.0 fails against that baseline (the plan then marks it defective), the patched 2.0.1 passes, and
a gate asking for more samples than the rounds give is inconclusive. Landed: the exporter keeps reporting the
old version for a while (the operator has not rolled its pods yet); the gate does not count that health, and
passes once the new version reports."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from estate.app import bootstrap
from tests.e2e.gating import Gated, watching
from tests.e2e.test_gated_rollouts import wave
from tests.support.terraform import wait_for

pytestmark = pytest.mark.slow

ERRORS = 'max(pg_errors_ratio{project="{{ env.project }}", env="{{ env.id }}"})'
LANDED = 'pg_up{project="{{ env.project }}", env="{{ env.id }}", version="{{ rollout.version }}"}'


def compare_gate(**extra: Any) -> dict[str, Any]:
    gate = {"query": ERRORS, "tolerance": 0.005, "interval": "1s", "count": 3, "min_samples": 6, "landed": LANDED}
    return {"compare": {**gate, **extra}}


def canary_plan(
    plan_id: str, gate: dict[str, Any], envs: tuple[str, ...] = ("eph-1", "eph-2"), **extra: Any
) -> dict[str, Any]:
    canary = {**wave("canary", "ephemeral", [gate]), "select": {"envs": [f"shop/{e}" for e in envs]}}
    return {"id": plan_id, "waves": [canary, wave("rest", "ephemeral")], **extra}


def comparison(view: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = view["waves"][0]["gates"][0]["details"]
    return found


def test_the_broken_version_fails_against_its_baseline_the_patch_passes_too_few_is_inconclusive(gated: Gated) -> None:
    envs = {f"eph-{i}": "ephemeral" for i in range(1, 6)}
    gated.apply(
        envs,
        canary_plan("canary", compare_gate(), mark_defective_on_failure=True),
        canary_plan("quick", compare_gate(count=1), envs=("eph-3",)),
    )
    gated.deploy_all(*envs)

    view = gated.json("rollout", "start", "postgres", "2.0.0", "--plan", "canary", "--no-preflight")
    rollout = view["id"]
    assert view["phase"] == "halted" and view["waves"][0]["phase"] == "failed"
    details = comparison(view)
    c = details["comparison"]
    assert view["waves"][0]["gates"][0]["result"] == "failed"
    assert c["p_value"] < 0.05 and c["effect_size"] == 1.0 and c["better"] == "lower"
    assert (c["new"]["envs"], c["baseline"]["envs"], c["baseline"]["samples"]) == (2, 3, 9)
    assert 0.2 < c["new"]["median"] < 0.3 and c["baseline"]["median"] < 0.01
    assert details["reason"].startswith("the new cohort is worse than its baseline beyond tolerance 0.005")
    baseline = {s["subject"] for s in details["subjects"] if s["baseline"]}
    assert baseline == {"shop/eph-3", "shop/eph-4", "shop/eph-5"}, "the ephemerals the rollout has not reached"
    modules = gated.json("module", "list")
    (broken,) = [v for v in modules[0]["versions"] if v["version"] == "2.0.0"]
    assert broken["lifecycle"] == "defective" and broken["lifecycle_by"] == f"rollout:{rollout}"
    assert broken["lifecycle_reason"] == f"failed gate 0 (compare) of wave 1 (canary) in rollout {rollout}"
    refused = gated.run("rollout", "retarget", rollout, "2.0.0", "--no-preflight", code=2)
    assert "postgres 2.0.0 is defective" in refused.err

    gated.json("rollout", "rollback", rollout)
    gated.json("rollout", "retarget", rollout, "2.0.1", "--no-preflight")
    view = gated.json("rollout", "rerun", rollout, "--wave", "canary")
    assert view["phase"] == "awaiting_promotion", view["reason"]
    c = comparison(view)["comparison"]
    assert comparison(view)["reason"].startswith("the new cohort is not worse than its baseline")
    assert c["new"]["median"] < 0.01 and c["p_value"] >= 0.05
    gated.run("rollout", "abort", rollout)  # eph-1 and eph-2 stay on 2.0.1: pinned by that rollout

    view = gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "quick", "--no-preflight")
    assert view["phase"] == "halted" and view["waves"][0]["phase"] == "inconclusive", view["reason"]
    assert comparison(view)["reason"] == "too few samples to compare: 1 new and 4 baseline, min_samples 6 each"


def test_health_the_old_version_produced_never_passes_the_gate(gated: Gated) -> None:
    # Terraform writes its status files into a directory of its own: the exporter reports what the test says.
    status = gated.sandbox.home / "demo" / "status"
    status.unlink()
    status.mkdir()
    gate = {
        "prometheus": {
            "query": ERRORS,
            "max": 0.05,
            "interval": "1s",
            "count": 2,
            "landed": LANDED,
            "landed_timeout": "2m",
        }
    }
    plan = {"id": "landed", "waves": [wave("eph", "ephemeral", [gate]), wave("dev", "development")]}
    gated.apply({"eph-1": "ephemeral", "dev-1": "development"}, plan)
    gated.json("deploy", "shop/eph-1")
    gated.exporter.deploy("shop", "eph-1", "1.0.0")  # the old version's health: perfect
    gated.prometheus.wait_for_metric("pg_errors_ratio", project="shop", env="eph-1", version="1.0.0")

    results: list[Any] = []
    driver = threading.Thread(
        target=lambda: results.append(
            gated.json("rollout", "start", "postgres", "2.0.1", "--plan", "landed", "--no-preflight")
        )
    )
    driver.start()
    try:
        with watching(gated.sandbox) as wave1:
            wait_for(lambda: wave1("postgres-1").get("phase") == "verifying", 120)
            app_rounds = _rounds(gated)
            wait_for(lambda: app_rounds() >= 4, 60)  # four rounds of healthy-looking, uncounted samples
            assert wave1("postgres-1")["gates"][0]["result"] is None, "the old version's health does not pass"
        gated.exporter.deploy("shop", "eph-1", "2.0.1")  # the new version reports at last
    finally:
        driver.join(120)
    (view,) = results
    assert view["phase"] == "awaiting_promotion", view["reason"]
    gate = view["waves"][0]["gates"][0]
    (subject,) = gate["details"]["subjects"]
    statuses = [s["status"] for s in subject["samples"]]
    assert statuses[:4] == ["not_landed"] * 4 and statuses[-2:] == ["ok", "ok"], statuses
    assert all(s["values"] and s["values"][0] < 0.01 for s in subject["samples"][:4]), "healthy, yet not counted"
    assert gate["result"] == "passed" and "(not landed)" in subject["reason"]


def _rounds(gated: Gated) -> Any:
    """How many sampling rounds the first gate of postgres-1's wave 1 has taken (from the engine's state)."""

    def count() -> int:
        app = bootstrap(gated.sandbox.environ)
        try:
            return app.rollouts.state("postgres-1").wave(1).rounds
        finally:
            app.close()

    return count
