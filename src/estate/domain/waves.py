"""Wave membership: which wave of a plan rolls each target environment.

An environment goes to the *first* wave whose selector matches it; targets no wave selects are
reported as uncovered. The result is frozen into the rollout when it starts, so later label or
plan edits do not move environments between waves of a running rollout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from estate.domain.ids import EnvRef
from estate.domain.plans import RolloutPlan
from estate.domain.selectors import SelectableEnv


@dataclass(frozen=True)
class WaveMembership:
    """Environments per wave (in plan order, each sorted by `project/env`) and the targets left out."""

    waves: tuple[tuple[EnvRef, ...], ...]
    uncovered: tuple[EnvRef, ...] = ()

    def wave_of(self, env: EnvRef) -> int | None:
        """The 1-based number of the wave that rolls `env`, or None when no wave does."""
        return next((n for n, refs in enumerate(self.waves, start=1) if env in refs), None)


def assign_waves(plan: RolloutPlan, targets: Iterable[SelectableEnv]) -> WaveMembership:
    """Assign every target to the first wave of `plan` that selects it; duplicates count once."""
    members: list[set[EnvRef]] = [set() for _ in plan.waves]
    uncovered: set[EnvRef] = set()
    for env in targets:
        ref = EnvRef(env.project, env.id)
        index = next((i for i, wave in enumerate(plan.waves) if wave.select.matches(env)), None)
        (uncovered if index is None else members[index]).add(ref)
    return WaveMembership(waves=tuple(tuple(sorted(refs)) for refs in members), uncovered=tuple(sorted(uncovered)))
