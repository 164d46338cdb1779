"""Module rules: which module version a resource type gets in a scope; the most specific scope wins.

Specificity, highest first: rollout pin > env > project+env type > env type > project > global.
A rollout pin is an env-scoped rule owned by a rollout: while a rollout drives an environment,
what it put there is the truth (see docs/decisions/0004-rollout-pins.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from estate.errors import InputError

CONFIG_OWNER = "config"


class Scope(IntEnum):
    """How specific a rule is; a higher value wins."""

    GLOBAL = 0
    PROJECT = 1
    ENV_TYPE = 2
    PROJECT_ENV_TYPE = 3
    ENV = 4
    PIN = 5


def scope_of(project: str | None, env_type: str | None, env: str | None) -> Scope:
    """The scope that the given fields of a rule (module or runner rule) form."""
    if env is not None:
        return Scope.ENV
    if project is not None and env_type is not None:
        return Scope.PROJECT_ENV_TYPE
    if env_type is not None:
        return Scope.ENV_TYPE
    if project is not None:
        return Scope.PROJECT
    return Scope.GLOBAL


@dataclass(frozen=True)
class ModuleRule:
    """Picks `module@version` for `resource_type` in the scope given by project/env_type/env."""

    resource_type: str
    module: str
    version: str
    project: str | None = None
    env_type: str | None = None
    env: str | None = None
    owner: str = CONFIG_OWNER

    @property
    def scope(self) -> Scope:
        if self.env is not None and self.owner != CONFIG_OWNER:
            return Scope.PIN
        return scope_of(self.project, self.env_type, self.env)

    @property
    def key(self) -> tuple[str, str | None, str | None, str | None, str]:
        """Identity of the rule's slot: two rules with one key are a tie."""
        return (self.resource_type, self.project, self.env_type, self.env, self.owner)

    @property
    def scope_text(self) -> str:
        """`project=checkout, env=eph-1`, or `global`: the scope as people read it in messages."""
        given = (("project", self.project), ("env_type", self.env_type), ("env", self.env))
        return ", ".join(f"{k}={v}" for k, v in given if v) or "global"

    def scope_problem(self) -> str | None:
        """Why the scope fields do not form a valid scope, or None."""
        if self.env is not None and self.project is None:
            return "a rule scoped to an env must also name its project"
        if self.env is not None and self.env_type is not None:
            return "a rule scoped to an env cannot also name an env_type"
        return None

    def applies_to(self, project: str, env: str, env_type: str) -> bool:
        return (
            (self.project is None or self.project == project)
            and (self.env_type is None or self.env_type == env_type)
            and (self.env is None or self.env == env)
        )


class RuleTieError(InputError):
    """Two rules of the same specificity match one environment."""

    def __init__(self, rules: tuple[ModuleRule, ...]) -> None:
        super().__init__(
            f"{len(rules)} rules of scope {rules[0].scope.name.lower()} tie ({rules[0].scope_text})",
            hint="make one of them more specific, or remove one",
        )
        self.rules = rules


def resolve_rule(
    rules: Iterable[ModuleRule], resource_type: str, project: str, env: str, env_type: str
) -> ModuleRule | None:
    """The most specific rule for `resource_type` in `project/env`; None when no rule applies."""
    matching = [r for r in rules if r.resource_type == resource_type and r.applies_to(project, env, env_type)]
    if not matching:
        return None
    best = max(r.scope for r in matching)
    winners = tuple(r for r in matching if r.scope == best)
    if len(winners) > 1:
        raise RuleTieError(winners)
    return winners[0]


def find_ties(rules: Sequence[ModuleRule]) -> list[tuple[int, int]]:
    """Index pairs of rules occupying the same slot (same resource type, scope values and owner)."""
    seen: dict[tuple[str, str | None, str | None, str | None, str], int] = {}
    ties = []
    for index, rule in enumerate(rules):
        if rule.key in seen:
            ties.append((seen[rule.key], index))
        else:
            seen[rule.key] = index
    return ties


class RuleIndex:
    """Rules grouped so that resolving one environment reads only the rules that can apply to it: a
    rollout over 10,000 environments holds 10,000 pins, and scanning them all per environment is quadratic."""

    def __init__(self, rules: Iterable[ModuleRule]) -> None:
        self._by_env: dict[tuple[str, str | None, str], list[ModuleRule]] = {}
        self._general: dict[str, list[ModuleRule]] = {}
        for rule in rules:
            if rule.env is not None:
                self._by_env.setdefault((rule.resource_type, rule.project, rule.env), []).append(rule)
            else:
                self._general.setdefault(rule.resource_type, []).append(rule)

    def resolve(self, resource_type: str, project: str, env: str, env_type: str) -> ModuleRule | None:
        """What `resolve_rule` over all the rules returns."""
        candidates = self._by_env.get((resource_type, project, env), []) + self._general.get(resource_type, [])
        return resolve_rule(candidates, resource_type, project, env, env_type)
