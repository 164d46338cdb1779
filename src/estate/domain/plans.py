"""Rollout plans: ordered waves with selectors, parallelism, failure tolerance, gates and policies.

Specs only; running them is the rollout state machine's job (`estate.domain.rollout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

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


def describe_gate(gate: Gate) -> str:
    """`bake 600s`, `approval by approver (four eyes)`, `prometheus 'q' max 0.05 x3/10s`: a gate as people read it."""
    if isinstance(gate, BakeGate):
        return f"bake {gate.seconds}s"
    if isinstance(gate, ApprovalGate):
        return f"approval by {gate.role}" + (" (four eyes)" if gate.four_eyes else "")
    bounds = " ".join(f"{k} {v:g}" for k, v in (("min", gate.min), ("max", gate.max)) if v is not None)
    return f"prometheus {gate.query!r} {bounds} x{gate.count}/{gate.interval_seconds}s"


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

    def wave_number(self, wave: str) -> int:
        """The 1-based number of a wave given by number or by name; InputError naming the waves otherwise."""
        names = [w.name for w in self.waves]
        if wave.isdigit() and 1 <= int(wave) <= len(names):
            return int(wave)
        if wave in names:
            return names.index(wave) + 1
        known = ", ".join(f"{i} {n}" for i, n in enumerate(names, 1))
        raise InputError(f"no wave '{wave}' in plan '{self.id}': its waves are {known}")
