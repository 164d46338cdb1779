"""Rollout pins after a rollout completes: which fold into the new global rule and which must stay.

While a rollout runs, each environment it deployed is pinned (an env-scoped rule the rollout owns, see
docs/decisions/0004-rollout-pins.md). When it completes, the global rule moves to the target version
and every pin that rule now implies is folded away; a pin that a more specific configured rule would
contradict stays, so no environment changes version behind anyone's back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from estate.domain.ids import EnvRef
from estate.domain.model import Environment
from estate.domain.rules import ModuleRule, RuleIndex


@dataclass(frozen=True)
class Folding:
    """The pins to delete, and a sentence for each pin that stays."""

    folded: tuple[ModuleRule, ...]
    kept: tuple[str, ...]


def fold_pins(
    rules: Iterable[ModuleRule], environments: Iterable[Environment], owner: str, final: ModuleRule
) -> Folding:
    """Which of `owner`'s pins `final` (the new global rule) makes redundant."""
    rules = list(rules)
    others = RuleIndex([r for r in rules if r.owner != owner and r.key != final.key] + [final])
    envs = {e.ref: e for e in environments}
    folded, kept = [], []
    for pin in (r for r in rules if r.owner == owner):
        env = envs.get(EnvRef(pin.project or "", pin.env or ""))
        if env is None:
            continue
        chosen = others.resolve(final.resource_type, env.project, env.id, env.type)
        if chosen is not None and (chosen.module, chosen.version) == (pin.module, pin.version):
            folded.append(pin)
        else:
            said = chosen.version if chosen else "nothing"
            kept.append(f"{env.ref} stays pinned to {pin.version}: a more specific rule says {said}")
    return Folding(tuple(folded), tuple(kept))
