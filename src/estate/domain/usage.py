"""Impact analysis: which module version each environment's resources resolve to."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from estate.domain.ids import EnvRef
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


@dataclass(frozen=True)
class UsageReport:
    """Impact analysis of one module: who is on which version, with totals, and who no rule covers."""

    bindings: tuple[Binding, ...]
    owners: Mapping[str, str]  # project -> owner
    by_version: Mapping[str, int]
    by_env_type: Mapping[str, int]
    by_owner: Mapping[str, int]
    unresolved: tuple[EnvRef, ...]  # their manifest needs the module's resource type, yet no rule picks a version


def usage_report(estate: Estate, module_id: str) -> UsageReport:
    """`module_usage` with totals per version, env type and owner; NotFoundError for an unknown module."""
    module = estate.require_module(module_id)
    owners = {p.id: p.owner for p in estate.projects}
    found = module_usage(estate, module_id)
    using = {b.env.ref for b in found}
    needing = {p.id for p in estate.projects if any(r.type == module.resource_type for r in p.resources)}
    return UsageReport(
        bindings=tuple(found),
        owners=owners,
        by_version=Counter(b.version or "" for b in found),
        by_env_type=Counter(b.env.type for b in found),
        by_owner=Counter(owners.get(b.env.project, "") for b in found),
        unresolved=tuple(e.ref for e in estate.environments if e.project in needing and e.ref not in using),
    )


def versions_by_env(estate: Estate) -> dict[EnvRef, dict[str, str]]:
    """Every environment and the version of each module its resources resolve to (`module -> version`; a
    module used twice at different versions shows them joined by `, `)."""
    manifests = {p.id: p.resources for p in estate.projects}
    rules = RuleIndex(estate.rules)
    found: dict[EnvRef, dict[str, str]] = {}
    for env in estate.environments:
        versions: dict[str, set[str]] = {}
        for b in _bindings(rules, env, manifests.get(env.project, ())):
            if b.module is not None and b.version is not None:
                versions.setdefault(b.module, set()).add(b.version)
        found[env.ref] = {m: ", ".join(sorted(v)) for m, v in sorted(versions.items())}
    return found
