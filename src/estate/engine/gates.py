"""Exit gates the engine evaluates outside the state machine: Prometheus sampling rounds.

Bake gates need no runner: the state machine times them from the persisted verify start, so an engine
restart never resets a bake.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from estate.domain import gate_eval
from estate.domain.model import Estate
from estate.domain.rollout_events import EvaluateGate, GateEvaluated
from estate.domain.rollout_state import GateResult, RolloutState
from estate.gates.prometheus import InstantQuerier, sample
from estate.store.codec import encode


class GateRunner(Protocol):
    def evaluate(self, state: RolloutState, action: EvaluateGate) -> GateEvaluated:
        """Evaluate one exit gate (blocking) and report it as an observation."""
        ...


class PrometheusGates:
    """Runs `count` sampling rounds `interval` apart against Prometheus, then judges them purely."""

    def __init__(
        self,
        client: InstantQuerier,
        estate: Callable[[], Estate],
        now: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.estate = estate
        self.now = now
        self.sleep = sleep

    def evaluate(self, state: RolloutState, action: EvaluateGate) -> GateEvaluated:
        gate, wave_name = action.gate, state.spec(action.wave).name
        delay = (action.not_before - self.now()).total_seconds()
        if delay > 0:
            self.sleep(delay)
        estate = self.estate()
        known = {e.ref: e for e in estate.environments}
        envs = [known[ref] for ref in action.envs if ref in known]
        expected = [p.subject for p in gate_eval.plan_queries(gate, wave_name, envs)]
        observations: list[gate_eval.Observation] = []
        for index in range(gate.count):
            if index:
                self.sleep(gate.interval_seconds)
            observations += sample(gate, envs, wave_name, self.client, sample_index=index)
        result = gate_eval.evaluate(gate, observations, expected)
        details = encode(result)
        details["at"] = self.now().isoformat()
        return GateEvaluated(action.key, action.wave, action.gate_index, GateResult(result.verdict.value), details)
