"""Rollout plans: ordered waves with selectors, parallelism, failure tolerance, gates and policies.

Specs only; running them is the rollout state machine's job (`estate.domain.rollout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from estate.domain.alerts import LabelMatcher
from estate.domain.change_windows import ChangeWindow
from estate.domain.selectors import Selector
from estate.errors import InputError


class OnFailure(StrEnum):
    """What a wave does when failures exceed its tolerance or a gate fails."""

    HALT = "halt"  # stop and wait for a human
    ROLLBACK = "rollback"  # roll the wave back automatically


class Destructive(StrEnum):
    """What preflight does when a plan would delete or replace resources."""

    BLOCK = "block"
    WARN = "warn"


class NoData(StrEnum):
    """How a Prometheus gate treats a query that returns no samples."""

    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    PASS = "pass"


class GateScope(StrEnum):
    """Evaluate a Prometheus query once per environment or once per wave."""

    ENV = "env"
    WAVE = "wave"


@dataclass(frozen=True)
class Tolerance:
    """How many failed environments a wave accepts: a count, or a percent of its size (rounded down)."""

    count: int = 0
    percent: float | None = None

    def allowed(self, wave_size: int) -> int:
        if self.percent is not None:
            return math.floor(wave_size * self.percent / 100)
        return self.count

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class BakeGate:
    """Exit gate: the wave must stay healthy for `seconds` after its deployments finish."""

    seconds: int


#: How long a metric gate waits for its `landed` query before it is inconclusive, unless the gate says.
LANDED_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class PrometheusGate:
    """Exit gate: a PromQL template evaluated `count` times every `interval_seconds`. With `landed`, a sample
    of an environment counts only once that query returns data for it (the new version reports)."""

    query: str
    max: float | None = None
    min: float | None = None
    interval_seconds: int = 10
    count: int = 1
    failure_limit: int = 0
    no_data: NoData = NoData.INCONCLUSIVE
    scope: GateScope = GateScope.ENV
    url: str | None = None
    landed: str | None = None
    landed_timeout_seconds: int = LANDED_TIMEOUT_SECONDS


class Better(StrEnum):
    """Which way a compared metric is healthier."""

    LOWER = "lower"  # error ratios, latencies, restarts
    HIGHER = "higher"  # throughput, success ratios


@dataclass(frozen=True)
class Margin:
    """How much worse the new cohort may be: in the metric's unit, or a percent of the baseline's median."""

    value: float = 0.0
    percent: bool = False

    def amount(self, baseline_median: float) -> float:
        return abs(baseline_median) * self.value / 100 if self.percent else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g}"


@dataclass(frozen=True)
class CompareGate:
    """Exit gate: the wave's environments (on the new version) against a baseline cohort still on the previous
    one, sampled together `count` times every `interval_seconds`; fails when the new cohort is worse by more
    than `tolerance` with `confidence` (a one-sided Mann-Whitney U test). The baseline is `baseline`'s
    environments, or by default those of the wave's env types this rollout has not changed."""

    query: str
    better: Better = Better.LOWER
    tolerance: Margin = Margin()
    confidence: float = 0.95
    interval_seconds: int = 10
    count: int = 3
    min_samples: int = 6  # per cohort; fewer is inconclusive
    baseline: Selector | None = None
    baseline_limit: int = 50  # environments sampled in the baseline cohort (the first ones, in rollout order)
    url: str | None = None
    landed: str | None = None
    landed_timeout_seconds: int = LANDED_TIMEOUT_SECONDS


@dataclass(frozen=True)
class ApprovalGate:
    """Entry gate: the wave deploys nothing until someone in `role` approves."""

    role: str
    four_eyes: bool = False


Gate = BakeGate | PrometheusGate | CompareGate | ApprovalGate
MetricGate = PrometheusGate | CompareGate  # the gates the engine samples from Prometheus


def gate_kind(gate: Gate) -> str:
    """`bake`, `prometheus`, `compare` or `approval`."""
    return type(gate).__name__.removesuffix("Gate").lower()


def describe_gate(gate: Gate) -> str:
    """`bake 600s`, `approval by approver (four eyes)`, `prometheus 'q' max 0.05 x3/10s`: a gate as people read it."""
    if isinstance(gate, BakeGate):
        return f"bake {gate.seconds}s"
    if isinstance(gate, ApprovalGate):
        return f"approval by {gate.role}" + (" (four eyes)" if gate.four_eyes else "")
    landed = ", landed check" if gate.landed else ""
    if isinstance(gate, CompareGate):
        against = "its baseline" if gate.baseline is None else "a selected baseline"
        return (
            f"compare {gate.query!r} against {against} ({gate.better} is better, tolerance {gate.tolerance},"
            f" {gate.confidence:.0%} confidence) x{gate.count}/{gate.interval_seconds}s{landed}"
        )
    bounds = " ".join(f"{k} {v:g}" for k, v in (("min", gate.min), ("max", gate.max)) if v is not None)
    return f"prometheus {gate.query!r} {bounds} x{gate.count}/{gate.interval_seconds}s{landed}"


@dataclass(frozen=True)
class Wave:
    """One step of a plan: the environments it selects and how to roll them."""

    name: str
    select: Selector
    max_parallel: int = 1
    failure_tolerance: Tolerance = Tolerance()
    gates: tuple[Gate, ...] = ()
    on_failure: OnFailure = OnFailure.HALT
    auto_promote: bool = False
    change_windows: tuple[ChangeWindow, ...] = ()  # deploys only start inside one of them (none: any time)


@dataclass(frozen=True)
class RolloutPlan:
    """A reusable strategy: ordered waves; an environment belongs to the first wave that selects it."""

    id: str
    waves: tuple[Wave, ...]
    destructive: Destructive = Destructive.BLOCK
    description: str = ""
    alert_selector: tuple[LabelMatcher, ...] = ()  # which firing alerts stop the line (none: every one)
    mark_defective_on_failure: bool = False  # a version that fails a wave's gates is marked defective

    def wave_number(self, wave: str) -> int:
        """The 1-based number of a wave given by number or by name; InputError naming the waves otherwise."""
        names = [w.name for w in self.waves]
        if wave.isdigit() and 1 <= int(wave) <= len(names):
            return int(wave)
        if wave in names:
            return names.index(wave) + 1
        known = ", ".join(f"{i} {n}" for i, n in enumerate(names, 1))
        raise InputError(f"no wave '{wave}' in plan '{self.id}': its waves are {known}")
