"""Resolve an environment's resource graph: manifest resources -> module versions -> inputs.

Pure: no I/O, no clock. For each resource of the project's manifest, `resolve_rule` picks the module
version (rollout pins are env-scoped rules, so they are honoured here without special cases). Inputs
are the version's `inputs` overlaid by the resource's manifest `params` of the same name: params are
the more specific source, as in module rules (see docs/decisions/0002-json-rendered-terraform.md).

Placeholders, in any string of an input or param (nested lists/objects included):

    ${context.env_id}  ${context.project_id}  ${context.env_type_id}  ${context.labels.<key>}
    ${resources.<alias>.outputs.<name>}

Context placeholders are replaced by their value. A resource placeholder becomes the Terraform
reference `${module.<alias>.<name>}` so Terraform orders the modules; such inputs are kept apart in
`ResolvedResource.references` already escaped for Terraform's JSON template syntax, while
`ResolvedResource.inputs` holds plain literal values (rendered as `*.tfvars.json`, never as templates).
A placeholder naming a missing resource, context key or label, and a cycle between resources, raise
`GraphError` before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from estate.domain.ids import EnvRef
from estate.domain.model import Environment, Estate, ModuleVersion, Resource
from estate.domain.rules import RuleTieError, resolve_rule
from estate.errors import GraphError, NotFoundError

JSON = Any
_EMPTY: Mapping[str, JSON] = MappingProxyType({})
_PLACEHOLDER = re.compile(r"\$\{\s*([^}]*?)\s*\}")
_CONTEXT_KEYS = ("env_id", "project_id", "env_type_id")


@dataclass(frozen=True)
class ResolvedResource:
    """One manifest resource, bound to `module@version` with its inputs filled in."""

    alias: str
    resource_type: str
    module: str
    version: str
    source: str
    inputs: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    references: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    depends_on: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The Terraform module block name for this resource."""
        return terraform_name(self.alias)


@dataclass(frozen=True)
class ResolvedGraph:
    """Everything one deployment of `env` runs: resources in dependency order (dependencies first)."""

    env: EnvRef
    env_type: str
    resources: tuple[ResolvedResource, ...] = ()

    def resource(self, alias: str) -> ResolvedResource | None:
        return next((r for r in self.resources if r.alias == alias), None)

    def versions(self) -> dict[str, str]:
        """`alias -> module@version`, for summaries."""
        return {r.alias: f"{r.module}@{r.version}" for r in self.resources}


def terraform_name(alias: str) -> str:
    """A Terraform identifier for `alias`: aliases are DNS labels and may start with a digit."""
    return alias if alias[:1].isalpha() else f"r-{alias}"


def resolve_graph(estate: Estate, ref: EnvRef, pins: Mapping[str, str] | None = None) -> ResolvedGraph:
    """Resolve `ref`'s graph from `estate`; `pins` (`module -> version`) override what the rules pick.

    Raises NotFoundError for an unknown environment and GraphError for anything that would make the
    graph unusable (no rule, unknown version, unknown placeholder, cycle).
    """
    env = estate.environment(ref)
    if env is None:
        raise NotFoundError(f"unknown environment '{ref}'", hint="see `estate env list`")
    project = estate.project(env.project)
    manifest = project.resources if project else ()
    aliases = {r.alias for r in manifest}
    resolved = {r.alias: _resolve_resource(estate, env, r, aliases, pins or {}) for r in manifest}
    order = _dependency_order(str(ref), resolved)
    return ResolvedGraph(ref, env.type, tuple(resolved[a] for a in order))


def _resolve_resource(
    estate: Estate, env: Environment, resource: Resource, aliases: set[str], pins: Mapping[str, str]
) -> ResolvedResource:
    where = f"{env.ref}: resource '{resource.alias}'"
    version = _module_version(estate, env, resource, pins)
    merged = {**version.inputs, **resource.params}
    inputs: dict[str, JSON] = {}
    references: dict[str, JSON] = {}
    depends: set[str] = set()
    for name, raw in merged.items():
        found: set[str] = set()
        value = _fill(raw, _substituter(env, aliases, found, f"{where}, input '{name}'"))
        if found:
            references[name] = _as_terraform(raw, env, aliases)
            depends |= found
        else:
            inputs[name] = value
    return ResolvedResource(
        resource.alias,
        resource.type,
        version.module,
        version.version,
        version.source,
        MappingProxyType(inputs),
        MappingProxyType(references),
        tuple(sorted(depends)),
    )


def _module_version(estate: Estate, env: Environment, resource: Resource, pins: Mapping[str, str]) -> ModuleVersion:
    try:
        rule = resolve_rule(estate.rules, resource.type, env.project, env.id, env.type)
    except RuleTieError as exc:
        raise GraphError(str(env.ref), f"resource '{resource.alias}': {exc}") from exc
    if rule is None:
        raise GraphError(
            str(env.ref),
            f"no module rule picks a module for resource '{resource.alias}' (type '{resource.type}')",
            hint="add a module_rules entry for this resource type",
        )
    wanted = pins.get(rule.module, rule.version)
    module = estate.module(rule.module)
    version = module.version(wanted) if module else None
    if version is None:
        raise GraphError(
            str(env.ref),
            f"resource '{resource.alias}': module '{rule.module}' has no version '{wanted}'",
            hint="publish it with `estate module publish`",
        )
    return version


def _fill(value: JSON, substitute: Callable[[str], str]) -> JSON:
    """Apply `substitute` to every placeholder in every string inside `value`."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: substitute(m.group(1)), value)
    if isinstance(value, Mapping):
        return {k: _fill(v, substitute) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(v, substitute) for v in value]
    return value


def _substituter(env: Environment, aliases: set[str], found: set[str], where: str) -> Callable[[str], str]:
    """Replace context placeholders by value; note resource placeholders in `found` (kept verbatim)."""

    def substitute(expr: str) -> str:
        alias, output = _resource_ref(expr, aliases, env, where)
        if alias is not None:
            found.add(alias)
            return f"${{module.{terraform_name(alias)}.{output}}}"
        return _context_value(expr, env, where)

    return substitute


def _as_terraform(raw: JSON, env: Environment, aliases: set[str]) -> JSON:
    """`raw` as a Terraform JSON-syntax template: literal text escaped, placeholders filled."""
    if isinstance(raw, str):
        parts: list[str] = []
        last = 0
        for m in _PLACEHOLDER.finditer(raw):
            parts.append(_escape(raw[last : m.start()]))
            alias, output = _resource_ref(m.group(1), aliases, env, "")
            parts.append(
                f"${{module.{terraform_name(alias)}.{output}}}"
                if alias is not None
                else _escape(_context_value(m.group(1), env, ""))
            )
            last = m.end()
        parts.append(_escape(raw[last:]))
        return "".join(parts)
    if isinstance(raw, Mapping):
        return {k: _as_terraform(v, env, aliases) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return [_as_terraform(v, env, aliases) for v in raw]
    return raw


def _escape(text: str) -> str:
    # Terraform's JSON syntax treats strings as templates: a literal "${" or "%{" must be doubled.
    return text.replace("${", "$${").replace("%{", "%%{")


def _resource_ref(expr: str, aliases: set[str], env: Environment, where: str) -> tuple[str | None, str]:
    parts = expr.split(".")
    if parts[0] != "resources":
        return None, ""
    if len(parts) != 4 or parts[2] != "outputs" or not parts[3]:
        raise GraphError(
            str(env.ref), f"{where}: '${{{expr}}}' is not of the form ${{resources.<alias>.outputs.<name>}}"
        )
    if parts[1] not in aliases:
        known = ", ".join(sorted(aliases)) or "none"
        raise GraphError(
            str(env.ref),
            f"{where}: '${{{expr}}}' names resource '{parts[1]}', which the "
            f"project's manifest does not declare (declared: {known})",
        )
    return parts[1], parts[3]


def _context_value(expr: str, env: Environment, where: str) -> str:
    values = {"env_id": env.id, "project_id": env.project, "env_type_id": env.type}
    parts = expr.split(".", 2)
    if parts[0] == "context" and len(parts) == 2 and parts[1] in values:
        return values[parts[1]]
    if parts[0] == "context" and len(parts) == 3 and parts[1] == "labels":
        if parts[2] in env.labels:
            return env.labels[parts[2]]
        raise GraphError(
            str(env.ref),
            f"{where}: '${{{expr}}}': the environment has no label '{parts[2]}'",
            hint="add the label to the environment or drop the placeholder",
        )
    known = ", ".join(f"${{context.{k}}}" for k in _CONTEXT_KEYS)
    raise GraphError(
        str(env.ref),
        f"{where}: unknown placeholder '${{{expr}}}'",
        hint=f"use {known}, ${{context.labels.<key>}} or ${{resources.<alias>.outputs.<name>}}",
    )


def _dependency_order(env: str, resources: Mapping[str, ResolvedResource]) -> list[str]:
    """Aliases with dependencies first (stable by name); GraphError naming the cycle if there is one."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(alias: str, path: list[str]) -> None:
        if state.get(alias) == 2:
            return
        if state.get(alias) == 1:
            cycle = [*path[path.index(alias) :], alias]
            raise GraphError(
                env,
                f"resources refer to each other in a cycle: {' -> '.join(cycle)}",
                hint="break the cycle: a resource cannot depend on its own outputs",
            )
        state[alias] = 1
        for dep in resources[alias].depends_on:
            visit(dep, [*path, alias])
        state[alias] = 2
        order.append(alias)

    for alias in sorted(resources):
        visit(alias, [])
    return order
