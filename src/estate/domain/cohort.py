"""The compare gate, the pure part: pick the baseline cohort, then judge the new cohort against it.

Each sampling round asks Prometheus for every environment of both cohorts, so both are observed over the same
window. The judgement is a function of the samples and the gate alone (no I/O, no clock): a one-sided
Mann-Whitney U test (as Kayenta's judge) of "the new cohort is worse than the baseline by more than the
tolerance", where the tolerance moves the baseline before ranking, plus the effect size of the unmoved
comparison. The new cohort fails only when that test is significant at the gate's confidence. Too few samples,
no baseline, or missing evidence in the new cohort is *inconclusive*, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import fmean, median

from estate.domain.gate_eval import (
    CohortSummary,
    Comparison,
    JudgedSample,
    Judgement,
    Sample,
    SampleStatus,
    SubjectJudgement,
    Verdict,
    counted,
    group,
    judged_samples,
    shown,
)
from estate.domain.model import Environment
from estate.domain.plans import Better, CompareGate


def select_baseline(
    gate: CompareGate, wave_envs: Sequence[Environment], candidates: Sequence[Environment]
) -> tuple[Environment, ...]:
    """The baseline cohort among `candidates` (environments the rollout has not changed, in rollout order):
    those `gate.baseline` selects, or those of the wave's env types; at most `gate.baseline_limit`."""
    if gate.baseline is not None:
        chosen = gate.baseline.select(candidates)
    else:
        types = {e.type for e in wave_envs}
        chosen = [e for e in candidates if e.type in types]
    return tuple(chosen[: max(gate.baseline_limit, 0)])


def evaluate_compare(gate: CompareGate, observations: Iterable[Sample], expected: Sequence[str] = ()) -> Judgement:
    """Judge every round's samples of both cohorts (`expected`: the new cohort's subjects)."""
    observed = list(observations)
    baseline_names = {o.subject for o in observed if o.baseline}
    grouped = group(observed, expected)
    subjects: list[SubjectJudgement] = []
    values: dict[bool, list[float]] = {False: [], True: []}
    missing: list[str] = []
    for name in sorted(grouped, key=lambda n: (n in baseline_names, n)):
        baseline = name in baseline_names
        samples, query = judged_samples(gate, grouped[name])
        good = [v for s in samples if s.status is SampleStatus.OK for v in s.values]
        values[baseline] += good
        problem = _problem(samples, baseline)
        if problem:
            missing.append(f"{name}: {problem}")
        subjects.append(_subject(name, query, samples, good, problem, baseline))
    comparison = compare(values[False], values[True], gate, envs=_envs(subjects))
    verdict, reason = _verdict(gate, comparison, missing, has_baseline=bool(baseline_names))
    return Judgement(verdict, reason, tuple(subjects), comparison)


def _envs(subjects: Sequence[SubjectJudgement]) -> tuple[int, int]:
    """How many environments of each cohort contributed samples."""
    new = sum(1 for s in subjects if not s.baseline and s.verdict is Verdict.PASSED)
    base = sum(1 for s in subjects if s.baseline and s.verdict is Verdict.PASSED)
    return new, base


def _problem(samples: Sequence[JudgedSample], baseline: bool) -> str:
    """Why a subject's evidence is incomplete ("" when it is not). A baseline environment without data only
    contributes nothing; in the new cohort, no data is missing evidence."""
    if not samples:
        return "not sampled"
    errors = [s for s in samples if s.status is SampleStatus.ERROR]
    if errors:
        return f"sample {errors[0].round + 1}: {errors[0].detail}"
    if baseline:
        return ""
    if any(s.status is SampleStatus.NO_DATA for s in samples):
        return "the query returned no data"
    if not counted(samples):
        return "the new version never reported (the landed query returned no data)"
    return ""


def _subject(
    name: str, query: str, samples: tuple[JudgedSample, ...], good: list[float], problem: str, baseline: bool
) -> SubjectJudgement:
    cohort = "baseline" if baseline else "new cohort"
    if problem:
        verdict, reason = Verdict.INCONCLUSIVE, f"{cohort}: {problem}"
    elif not good:
        verdict, reason = Verdict.INCONCLUSIVE, f"{cohort}: no value to compare"
    else:
        verdict = Verdict.PASSED  # its samples count
        reason = f"{cohort}: median {_num(median(good))} over {len(good)} value(s); observed " + ", ".join(
            shown(s) for s in samples
        )
    return SubjectJudgement(name, query, verdict, reason, samples, 0, baseline)


def compare(
    new: Sequence[float], baseline: Sequence[float], gate: CompareGate, envs: tuple[int, int] = (0, 0)
) -> Comparison:
    """The statistics of the new cohort's values against the baseline's (no verdict yet)."""
    summary_new = _summary(envs[0], new)
    summary_base = _summary(envs[1], baseline)
    delta = gate.tolerance.amount(summary_base.median) if summary_base.median is not None else 0.0
    comparison = Comparison(summary_new, summary_base, str(gate.better), delta, gate.confidence)
    if not new or not baseline:
        return comparison
    # SciPy costs a second of import time and ~60 MB: only a compare gate's judgement loads it, not every command.
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]  # noqa: PLC0415

    worse = "greater" if gate.better is Better.LOWER else "less"
    moved = [b + delta for b in baseline] if gate.better is Better.LOWER else [b - delta for b in baseline]
    test = mannwhitneyu(new, moved, alternative=worse, method="auto")
    p_value = float(test.pvalue)
    plain = mannwhitneyu(new, baseline, alternative=worse, method="auto")
    u_plain = float(plain.statistic)
    effect = 2 * u_plain / (len(new) * len(baseline)) - 1  # rank-biserial: P(worse) - P(better)
    if gate.better is Better.HIGHER:
        effect = -effect
    assert summary_new.median is not None and summary_base.median is not None
    change = summary_new.median - summary_base.median
    relative = change / abs(summary_base.median) if summary_base.median else None
    return Comparison(
        summary_new,
        summary_base,
        str(gate.better),
        delta,
        gate.confidence,
        statistic=float(test.statistic),
        p_value=1.0 if math.isnan(p_value) else p_value,  # every value tied: no evidence either way
        effect_size=effect,
        median_change=change,
        relative_change=relative,
    )


def _summary(envs: int, values: Sequence[float]) -> CohortSummary:
    if not values:
        return CohortSummary(envs, 0)
    return CohortSummary(envs, len(values), median(values), fmean(values))


def _verdict(gate: CompareGate, c: Comparison, missing: list[str], *, has_baseline: bool) -> tuple[Verdict, str]:
    """The decision in words: worse (failed), not worse (passed), or why it cannot tell (inconclusive)."""
    alpha = 1 - gate.confidence
    if c.p_value is not None and c.p_value < alpha:
        return (
            Verdict.FAILED,
            f"the new cohort is worse than its baseline beyond tolerance {gate.tolerance}: " + _facts(c),
        )
    if missing:
        more = f"; and {len(missing) - 3} more" if len(missing) > 3 else ""
        return Verdict.INCONCLUSIVE, "evidence is missing: " + "; ".join(missing[:3]) + more
    if not has_baseline or c.baseline.samples == 0:
        return Verdict.INCONCLUSIVE, "no baseline: no environment still on the previous version was observed"
    if c.new.samples < gate.min_samples or c.baseline.samples < gate.min_samples:
        return Verdict.INCONCLUSIVE, (
            f"too few samples to compare: {c.new.samples} new and {c.baseline.samples} baseline, "
            f"min_samples {gate.min_samples} each"
        )
    return (
        Verdict.PASSED,
        f"the new cohort is not worse than its baseline beyond tolerance {gate.tolerance}: " + _facts(c),
    )


def _facts(c: Comparison) -> str:
    assert c.p_value is not None and c.new.median is not None and c.baseline.median is not None
    relative = f", {c.relative_change:+.0%}" if c.relative_change is not None else ""
    direction = "lower" if c.better == "lower" else "higher"
    return (
        f"median {_num(c.new.median)} ({c.new.samples} samples, {c.new.envs} env) against "
        f"{_num(c.baseline.median)} ({c.baseline.samples} samples, {c.baseline.envs} env), change "
        f"{_num(c.median_change or 0.0, signed=True)}{relative}; {direction} is better; Mann-Whitney U "
        f"{_num(c.statistic or 0.0)}, p {c.p_value:.3g} (needs < {1 - c.confidence:.3g}), effect size "
        f"{c.effect_size:+.2f}"
    )


def _num(v: float, *, signed: bool = False) -> str:
    return f"{v:+.6g}" if signed else f"{v:.6g}"
