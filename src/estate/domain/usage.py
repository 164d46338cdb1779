"""Impact analysis: which module version each environment's resources resolve to."""

from __future__ import annotations

from dataclasses import dataclass

from estate.domain.model import Environment, Estate, Resource
from estate.domain.rules import ModuleRule, RuleIndex, Scope


@dataclass(frozen=True)
class Binding:
    """Resource `alias` of `env` is implemented by `module@version`, chosen by `rule`."""

    env: Environment
    alias: str
    resource_type: str
    rule: ModuleRule | None

    @property
    def module(self) -> str | None:
        return self.rule.module if self.rule else None

    @property
    def version(self) -> str | None:
        return self.rule.version if self.rule else None

    @property
    def scope(self) -> Scope | None:
        return self.rule.scope if self.rule else None


def _bindings(rules: RuleIndex, env: Environment, resources: tuple[Resource, ...]) -> list[Binding]:
    return [Binding(env, r.alias, r.type, rules.resolve(r.type, env.project, env.id, env.type)) for r in resources]


def module_usage(estate: Estate, module_id: str) -> list[Binding]:
    """Bindings of every environment whose resolved graph uses `module_id`, by env type rank then name."""
    rank = estate.env_type_rank()
    manifests = {p.id: p.resources for p in estate.projects}
    rules = RuleIndex(estate.rules)
    found = [
        b
        for env in estate.environments
        for b in _bindings(rules, env, manifests.get(env.project, ()))
        if b.module == module_id
    ]
    return sorted(found, key=lambda b: (rank.get(b.env.type, 1 << 30), b.env.project, b.env.id, b.alias))
