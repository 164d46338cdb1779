"""Rollout plans: ordered waves with selectors, parallelism, failure tolerance, gates and policies.

Specs only; running them is the rollout state machine's job (`estate.domain.rollout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from estate.domain.selectors import Selector


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


@dataclass(frozen=True)
class PrometheusGate:
    """Exit gate: a PromQL template evaluated `count` times every `interval_seconds`."""

    query: str
    max: float | None = None
    min: float | None = None
    interval_seconds: int = 10
    count: int = 1
    failure_limit: int = 0
    no_data: NoData = NoData.INCONCLUSIVE
    scope: GateScope = GateScope.ENV
    url: str | None = None


@dataclass(frozen=True)
class ApprovalGate:
    """Entry gate: the wave deploys nothing until someone in `role` approves."""

    role: str
    four_eyes: bool = False


Gate = BakeGate | PrometheusGate | ApprovalGate


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


@dataclass(frozen=True)
class RolloutPlan:
    """A reusable strategy: ordered waves; an environment belongs to the first wave that selects it."""

    id: str
    waves: tuple[Wave, ...]
    destructive: Destructive = Destructive.BLOCK
    description: str = ""
