"""Runner rules: which runner pool runs an environment's Terraform; the most specific rule wins.

Specificity mirrors module rules (`estate.domain.rules`): env > project+env type > env type > project >
global; among rules of one scope, the one that requires more labels is more specific. Two rules of the
same specificity that both match an environment are a tie, which estate-as-code validation rejects,
so every environment resolves to exactly one pool. Without a matching rule an environment runs on
`DEFAULT_POOL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from estate.domain.rules import Scope, scope_of
from estate.errors import InputError

if TYPE_CHECKING:  # the estate model holds runner rules, so it cannot be imported here at run time
    from estate.domain.model import Environment

DEFAULT_POOL = "default"
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RunnerRule:
    """Runs the Terraform of the environments in its scope (project/env_type/env, plus labels) on `pool`."""

    pool: str
    project: str | None = None
    env_type: str | None = None
    env: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)

    @property
    def scope(self) -> Scope:
        return scope_of(self.project, self.env_type, self.env)

    @property
    def specificity(self) -> tuple[Scope, int]:
        return (self.scope, len(self.labels))

    @property
    def slot(self) -> tuple[str | None, str | None, str | None, tuple[tuple[str, str], ...]]:
        """Identity of the rule's scope: two rules in one slot tie on every environment they match."""
        return (self.project, self.env_type, self.env, tuple(sorted(self.labels.items())))

    @property
    def scope_text(self) -> str:
        """`project=checkout, labels region=eu`, or `global`: the scope as people read it in messages."""
        given = [
            f"{k}={v}" for k, v in (("project", self.project), ("env_type", self.env_type), ("env", self.env)) if v
        ]
        if self.labels:
            given.append("labels " + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())))
        return ", ".join(given) or "global"

    def applies_to(self, env: Environment) -> bool:
        return (
            (self.project is None or self.project == env.project)
            and (self.env_type is None or self.env_type == env.type)
            and (self.env is None or self.env == env.id)
            and all(env.labels.get(k) == v for k, v in self.labels.items())
        )


class RunnerRuleTie(InputError):
    """Two runner rules of the same specificity match one environment."""

    def __init__(self, env: Environment, rules: Sequence[RunnerRule]) -> None:
        scopes = "; ".join(f"{r.scope_text} -> {r.pool}" for r in rules)
        super().__init__(
            f"{env.ref}: {len(rules)} runner rules of equal specificity match ({scopes})",
            hint="make one of them more specific (a project, an env type or another label), or remove one",
        )
        self.env = env
        self.rules = tuple(rules)


def winners(rules: Iterable[RunnerRule], env: Environment) -> tuple[RunnerRule, ...]:
    """The most specific rules matching `env`: one, none, or several (a tie)."""
    matching = [r for r in rules if r.applies_to(env)]
    if not matching:
        return ()
    best = max(r.specificity for r in matching)
    return tuple(r for r in matching if r.specificity == best)


def resolve_pool(rules: Iterable[RunnerRule], env: Environment) -> str:
    """The pool that runs `env`'s Terraform; RunnerRuleTie when two rules of equal specificity match."""
    found = winners(rules, env)
    if len(found) > 1:
        raise RunnerRuleTie(env, found)
    return found[0].pool if found else DEFAULT_POOL


def find_ties(rules: Sequence[RunnerRule], environments: Iterable[Environment]) -> list[tuple[int, int, str]]:
    """`(first, second, why)` for each pair of rules that tie: the same slot, or an environment that both match
    with equal specificity (named in `why`). Each pair is reported once."""
    found: dict[tuple[int, int], str] = {}
    seen: dict[object, int] = {}
    for index, rule in enumerate(rules):
        if rule.slot in seen:
            found[(seen[rule.slot], index)] = "the same scope"
        else:
            seen[rule.slot] = index
    position = {id(r): i for i, r in enumerate(rules)}
    for env in environments:
        tied = winners(rules, env)
        for other in tied[1:]:
            pair = (position[id(tied[0])], position[id(other)])
            found.setdefault(pair, f"both match {env.ref}")
    return [(a, b, why) for (a, b), why in sorted(found.items())]
