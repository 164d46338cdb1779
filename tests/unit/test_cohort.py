"""The compare gate's decision with fixed samples: a broken version fails against its baseline, a patched one
passes, too few samples or no baseline is inconclusive, missing evidence is never a pass; and the baseline is
picked among the environments the rollout has not changed."""

from __future__ import annotations

import pytest

from estate.domain.cohort import evaluate_compare, select_baseline
from estate.domain.gate_eval import Sample, Verdict
from estate.domain.model import Environment
from estate.domain.plans import Better, CompareGate, Margin
from estate.domain.selectors import Selector

NEW = ["shop/eph-1", "shop/eph-2"]
BASE = ["shop/eph-3", "shop/eph-4", "shop/eph-5"]


def samples(values: dict[str, list[float | None]], *, baseline: bool = False) -> list[Sample]:
    return [
        Sample(s, i, f"q{{{s}}}", () if v is None else (v,), baseline=baseline)
        for s, vs in values.items()
        for i, v in enumerate(vs)
    ]


def run(gate: CompareGate, new: dict[str, list[float | None]], base: dict[str, list[float | None]]):  # type: ignore[no-untyped-def]
    return evaluate_compare(gate, [*samples(new), *samples(base, baseline=True)], list(new))


GATE = CompareGate("q", tolerance=Margin(0.005), count=3, min_samples=6)
HEALTHY = {"shop/eph-3": [0.0012, 0.0011, 0.0013], "shop/eph-4": [0.0008, 0.0009, 0.0008], "shop/eph-5": [0.001] * 3}


def test_the_broken_version_fails_against_its_baseline_with_the_statistics_to_show_why() -> None:
    result = run(GATE, {"shop/eph-1": [0.25, 0.26, 0.24], "shop/eph-2": [0.27, 0.25, 0.26]}, HEALTHY)
    assert result.verdict is Verdict.FAILED
    c = result.comparison
    assert c is not None and c.p_value is not None and c.p_value < 0.05
    assert c.effect_size == 1.0, "every new sample is worse than every baseline sample"
    assert (c.new.samples, c.baseline.samples, c.new.envs, c.baseline.envs) == (6, 9, 2, 3)
    assert c.median_change is not None and c.median_change > 0.2 and c.tolerance == 0.005
    assert result.reason.startswith("the new cohort is worse than its baseline beyond tolerance 0.005: median 0.255")
    assert "Mann-Whitney U" in result.reason and "p 0.000" in result.reason
    assert {s.subject: s.baseline for s in result.subjects} == {
        **dict.fromkeys(NEW, False),
        **dict.fromkeys(BASE, True),
    }


def test_the_patched_version_passes_even_slightly_worse_within_the_tolerance() -> None:
    patched = {"shop/eph-1": [0.0011, 0.0012, 0.0014], "shop/eph-2": [0.0015, 0.0013, 0.0012]}
    result = run(GATE, patched, HEALTHY)
    assert result.verdict is Verdict.PASSED, result.reason
    assert result.comparison is not None and result.comparison.p_value is not None
    assert result.comparison.effect_size is not None and result.comparison.effect_size > 0, "worse, but within 0.005"
    strict = run(CompareGate("q", count=3, min_samples=6), patched, HEALTHY)
    assert strict.verdict is Verdict.FAILED, "without a tolerance, consistently worse samples fail"


def test_too_few_samples_or_no_baseline_is_inconclusive_never_a_pass() -> None:
    few = run(GATE, {"shop/eph-1": [0.001, 0.001]}, {"shop/eph-3": [0.001, 0.001]})
    assert few.verdict is Verdict.INCONCLUSIVE
    assert few.reason == "too few samples to compare: 2 new and 2 baseline, min_samples 6 each"
    alone = run(GATE, {"shop/eph-1": [0.001] * 6}, {})
    assert alone.verdict is Verdict.INCONCLUSIVE and alone.reason.startswith("no baseline")
    silent_baseline = run(GATE, {"shop/eph-1": [0.001] * 6}, {"shop/eph-3": [None] * 6})
    assert silent_baseline.verdict is Verdict.INCONCLUSIVE and silent_baseline.reason.startswith("no baseline")


def test_missing_evidence_in_the_new_cohort_is_inconclusive_unless_it_already_fails() -> None:
    gaps = run(GATE, {"shop/eph-1": [0.001, None, 0.001], "shop/eph-2": [0.001] * 3}, HEALTHY)
    assert gaps.verdict is Verdict.INCONCLUSIVE and "shop/eph-1: the query returned no data" in gaps.reason
    error = [Sample("shop/eph-2", 0, "q", error="prometheus: unreachable")]
    broken = evaluate_compare(
        GATE,
        [*samples({"shop/eph-1": [0.3] * 6}), *error, *samples(HEALTHY, baseline=True)],
        ["shop/eph-1", "shop/eph-2"],
    )
    assert broken.verdict is Verdict.FAILED, "a definite failure wins over missing evidence"
    nan = run(GATE, {"shop/eph-1": [float("nan")] * 6}, HEALTHY)
    assert nan.verdict is Verdict.INCONCLUSIVE


def test_higher_is_better_and_a_relative_tolerance() -> None:
    gate = CompareGate("q", better=Better.HIGHER, tolerance=Margin(10, percent=True), count=3, min_samples=6)
    base = {"shop/eph-3": [100.0, 101.0, 99.0], "shop/eph-4": [100.0, 102.0, 98.0]}
    dropped = run(gate, {"shop/eph-1": [60.0, 61.0, 59.0], "shop/eph-2": [62.0, 60.0, 58.0]}, base)
    assert dropped.verdict is Verdict.FAILED and dropped.comparison is not None
    assert dropped.comparison.tolerance == pytest.approx(10.0) and dropped.comparison.effect_size == 1.0
    within = run(gate, {"shop/eph-1": [95.0, 96.0, 94.0], "shop/eph-2": [95.0, 93.0, 96.0]}, base)
    assert within.verdict is Verdict.PASSED, within.reason


def test_identical_cohorts_pass_and_every_tie_is_no_evidence() -> None:
    same = run(GATE, {"shop/eph-1": [0.001] * 3, "shop/eph-2": [0.001] * 3}, HEALTHY | {"shop/eph-3": [0.001] * 3})
    assert same.verdict is Verdict.PASSED
    tied = run(CompareGate("q", count=3, min_samples=3), {"shop/eph-1": [0.0] * 3}, {"shop/eph-3": [0.0] * 3})
    assert tied.verdict is Verdict.PASSED and tied.comparison is not None and tied.comparison.p_value == 1.0


def test_not_landed_samples_of_the_new_cohort_do_not_count() -> None:
    early = [Sample("shop/eph-1", i, "q", (0.001,), landed=False) for i in range(3)]
    late = [Sample("shop/eph-1", i, "q", (0.25,), landed=True) for i in range(3, 9)]
    result = evaluate_compare(GATE, [*early, *late, *samples(HEALTHY, baseline=True)], ["shop/eph-1"])
    assert result.verdict is Verdict.FAILED
    assert result.comparison is not None and result.comparison.new.samples == 6


def env(name: str, env_type: str, **labels: str) -> Environment:
    project, _, env_id = name.partition("/")
    return Environment(project, env_id, env_type, labels)


def test_the_baseline_is_the_wave_types_or_a_selector_and_is_capped() -> None:
    wave = [env("shop/eph-1", "ephemeral")]
    candidates = [
        env("shop/eph-2", "ephemeral"),
        env("shop/dev", "development", region="eu"),
        env("crm/eph", "ephemeral"),
    ]
    assert [e.ref for e in select_baseline(CompareGate("q"), wave, candidates)] == [
        candidates[0].ref,
        candidates[2].ref,
    ]
    chosen = select_baseline(
        CompareGate("q", baseline=Selector(env_types=frozenset({"development"}))), wave, candidates
    )
    assert [e.id for e in chosen] == ["dev"]
    assert len(select_baseline(CompareGate("q", baseline_limit=1), wave, candidates)) == 1
