"""A gate sampler for tests and benchmarks of the engine: every sample sits inside its gate's bounds (the real
sampler is tested against a real Prometheus)."""

from __future__ import annotations

from estate.domain.gate_eval import Sample, SamplingRound
from estate.domain.plans import CompareGate


class PassingSampler:
    """Samples that pass: at the bound of a threshold gate, both cohorts alike for a compare gate."""

    def sample(self, round: SamplingRound) -> list[Sample]:
        gate = round.gate
        landed = True if gate.landed else None
        if isinstance(gate, CompareGate):  # both cohorts alike: not worse
            cohorts = ((round.envs, False), (round.baseline, True))
            return [
                Sample(str(e.ref), round.round, "q", (0.001,), landed=landed, baseline=b)
                for envs, b in cohorts
                for e in envs
            ]
        value = gate.max if gate.max is not None else (gate.min or 0.0)
        subjects = [f"wave/{round.wave_name}"] if gate.scope == "wave" else [str(e.ref) for e in round.envs]
        return [Sample(s, round.round, "q", (value,), landed=landed) for s in subjects]
