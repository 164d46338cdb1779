"""The console's pure parts: a gate's chart (where points and bounds go) and what each control's confirmation
says it will do, from rollout views built by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from estate.app.views.rollouts import GateView, RolloutEnvView, RolloutView, SampleView, WaveView
from estate.console.charts import HEIGHT, TOP, sample_chart
from estate.console.controls import LISTED, confirmation

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def samples(*rounds: tuple[str, list[float]]) -> list[SampleView]:
    return [SampleView(round=i, status=s, values=v, detail="") for i, (s, v) in enumerate(rounds)]


def test_a_chart_puts_breaches_above_the_bound_and_marks_missing_data_on_the_baseline() -> None:
    chart = sample_chart(
        samples(("ok", [0.01]), ("breach", [0.25]), ("no_data", [])),
        low=None,
        high=0.05,
        subject="shop/eph-1",
        verdict="failed",
    )
    (bound,) = chart.bounds
    ok, breach, missing = chart.points
    assert bound.label == "max 0.05"
    assert breach.y < bound.at < ok.y  # SVG y grows downwards: above the line means a smaller y
    assert breach.y >= TOP and ok.y <= chart.bottom
    assert missing.empty and missing.y == chart.bottom and missing.label == "round 2: no_data"
    assert ok.x < breach.x < missing.x
    assert chart.series == [f"{ok.x},{ok.y} {breach.x},{breach.y}"]
    assert chart.summary == "shop/eph-1: 3 samples (0.01, 0.25) against max 0.05: failed"


def test_a_chart_of_one_sample_or_none_stays_inside_the_frame() -> None:
    for given in ([], samples(("ok", [0.0]))):
        chart = sample_chart(given, low=0.5, high=None, subject="wave", verdict="inconclusive")
        assert all(0 <= p.x <= chart.width and 0 <= p.y <= HEIGHT for p in chart.points)
        assert [b.label for b in chart.bounds] == ["min 0.5"]
        assert chart.series == []


def env(name: str, status: str, version: str, previous: str = "1.0.0", *, changed: bool = False) -> RolloutEnvView:
    return RolloutEnvView(
        env=name,
        status=status,
        version=version,
        previous_version=previous,
        changed=changed,
        deployment_id=None,
        reason="",
    )


def wave(number: int, name: str, envs: list[RolloutEnvView], counts: dict[str, int], **extra: Any) -> WaveView:
    fields: dict[str, Any] = {
        "phase": "pending",
        "reason": "",
        "max_parallel": 2,
        "failure_tolerance": "0",
        "on_failure": "halt",
        "auto_promote": False,
        "overridden_by": None,
        "verify_started_at": None,
        "gates": [],
    }
    return WaveView(number=number, name=name, counts=counts, envs=envs, **{**fields, **extra})


def rollout(*waves: WaveView, phase: str = "awaiting_promotion", current: int = 1) -> RolloutView:
    return RolloutView(
        id="postgres-1",
        module="postgres",
        version="2.0.1",
        plan="story",
        phase=phase,
        reason="",
        started_by="alex",
        created_at=NOW,
        current_wave=current,
        waiting_for=None,
        since=NOW,
        engine=None,
        waves=list(waves),
        not_covered=[],
        audit=[],
        events=[],
        preflight=None,
    )


APPROVAL = GateView(
    index=0, kind="approval", spec="approval by approver (four eyes)", result=None, at=None, four_eyes=True
)


def test_promote_names_the_next_wave_its_environments_and_versions_and_its_approval() -> None:
    many = [env(f"shop/prod-{i}", "pending", "1.0.0") for i in range(LISTED + 5)]
    view = rollout(
        wave(1, "eph", [], {"succeeded": 2}, phase="awaiting_promotion"),
        wave(2, "prod", many, {"pending": 40}, gates=[APPROVAL]),
    )
    said = confirmation(view, "promote")
    assert said.title == "Promote to wave 2 (prod)" and said.api == "/api/v1/rollouts/postgres-1/promote"
    assert (
        "Wave 2 (prod) starts: its 40 environments are deployed with postgres 2.0.1, at most 2 at a time." in said.lines
    )
    assert "It first waits for an approval (approval by approver (four eyes))." in said.lines
    assert [(c.env, c.before, c.after) for c in said.changes[:1]] == [("shop/prod-0", "1.0.0", "2.0.1")]
    assert len(said.changes) == LISTED and said.more == 40 - LISTED


def test_rollback_lists_only_what_the_rollout_changed_each_back_to_its_own_version() -> None:
    envs = [
        env("shop/eph-1", "failed", "2.0.0", changed=True),
        env("shop/eph-2", "succeeded", "2.0.0", previous="0.9.0", changed=True),
        env("shop/eph-3", "pending", "1.0.0"),
    ]
    view = rollout(wave(1, "eph", envs, {"failed": 1, "succeeded": 1, "pending": 1}), wave(2, "dev", [], {}))
    said = confirmation(view, "rollback", wave=1)
    assert said.body == {"wave": 1} and said.danger
    assert [(c.env, c.before, c.after) for c in said.changes] == [
        ("shop/eph-1", "2.0.0", "1.0.0"),
        ("shop/eph-2", "2.0.0", "0.9.0"),
    ]
    assert "Waves after 1 are reset" in said.lines[0]


def test_rerun_of_the_failed_only_keeps_those_that_succeeded() -> None:
    envs = [env("shop/eph-1", "failed", "2.0.0"), env("shop/eph-2", "succeeded", "2.0.1")]
    view = rollout(wave(1, "eph", envs, {"failed": 1, "succeeded": 1}), phase="halted")
    said = confirmation(view, "rerun-failed", wave=1)
    assert said.body == {"wave": 1, "only_failed": True}
    assert [c.env for c in said.changes] == ["shop/eph-1"]
    assert "the 1 environments that did not succeed are deployed again" in said.lines[0]
    assert "the 1 that succeeded stay as they are" in said.lines[0]


def test_approve_of_a_halted_wave_is_an_override_and_says_so() -> None:
    view = rollout(wave(1, "eph", [], {"failed": 1}, phase="failed", reason="gate 0 failed"), phase="halted")
    said = confirmation(view, "approve")
    assert said.body == {"override": True} and "(override)" in said.button
    assert said.lines[0] == "Wave 1 is failed: gate 0 failed."


def test_four_eyes_is_mentioned_only_for_a_four_eyes_gate() -> None:
    gated = rollout(wave(1, "prod", [], {"pending": 1}, gates=[APPROVAL]), phase="awaiting_approval")
    plain = rollout(wave(1, "prod", [], {"pending": 1}), phase="awaiting_approval")
    assert any("Four eyes: alex" in line for line in confirmation(gated, "approve").lines)
    assert not any("Four eyes" in line for line in confirmation(plain, "approve").lines)


def test_retarget_offers_the_other_versions_and_the_destroy_switch() -> None:
    said = confirmation(rollout(wave(1, "eph", [], {})), "retarget", versions=["1.0.0", "2.0.0", "2.0.1"])
    assert said.versions == ["1.0.0", "2.0.0"] and said.allow_destroy and said.job


def test_an_unknown_command_or_wave_is_refused() -> None:
    view = rollout(wave(1, "eph", [], {}))
    with pytest.raises(ValueError, match="unknown command 'launch'"):
        confirmation(view, "launch")
    with pytest.raises(ValueError, match="no wave 7"):
        confirmation(view, "rollback", wave=7)
