"""The estate as table rows, both ways; rows are also what `estate apply` diffs, so a diff is exact."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import Table

from estate.domain.access import Binding, Role
from estate.domain.lifecycle import Lifecycle
from estate.domain.model import Environment, EnvType, Estate, Module, ModuleVersion, Project, Resource
from estate.domain.plans import RolloutPlan
from estate.domain.rules import CONFIG_OWNER, ModuleRule
from estate.domain.runner_rules import RunnerRule
from estate.store import tables
from estate.store.codec import decode_as, encode

Row = dict[str, Any]


def rule_slot(rule: ModuleRule) -> str:
    return "|".join(v or "" for v in (rule.resource_type, rule.project, rule.env_type, rule.env, rule.owner))


@dataclass(frozen=True)
class Kind:
    """One kind of object `apply` manages: its table and how to key and render its rows."""

    name: str
    table: Table
    key_columns: tuple[str, ...]
    rows: Callable[[Estate], dict[str, Row]]
    compared: tuple[str, ...] = ()  # columns a diff compares; empty means all


def _rule_row(r: ModuleRule) -> Row:
    return {
        "slot": rule_slot(r),
        "resource_type": r.resource_type,
        "module": r.module,
        "version": r.version,
        "project": r.project,
        "env_type": r.env_type,
        "env": r.env,
        "owner": r.owner,
    }


KINDS: tuple[Kind, ...] = (
    Kind("env_type", tables.env_types, ("id",), lambda e: {t.id: {"id": t.id, "rank": t.rank} for t in e.env_types}),
    Kind(
        "project",
        tables.projects,
        ("id",),
        lambda e: {
            p.id: {
                "id": p.id,
                "owner": p.owner,
                "resources": {r.alias: {"type": r.type, "params": dict(r.params)} for r in p.resources},
            }
            for p in e.projects
        },
    ),
    Kind(
        "environment",
        tables.environments,
        ("project", "id"),
        lambda e: {
            str(v.ref): {"project": v.project, "id": v.id, "type": v.type, "labels": dict(v.labels)}
            for v in e.environments
        },
    ),
    Kind(
        "module",
        tables.modules,
        ("id",),
        lambda e: {m.id: {"id": m.id, "resource_type": m.resource_type} for m in e.modules},
    ),
    Kind(
        "module_version",
        tables.module_versions,
        ("module", "version"),
        lambda e: {
            f"{v.module}@{v.version}": {
                "module": v.module,
                "version": v.version,
                "source": v.source,
                "inputs": dict(v.inputs),
            }
            for m in e.modules
            for v in m.versions
        },
        compared=("source", "inputs"),
    ),
    Kind(
        "module_rule",
        tables.module_rules,
        ("slot",),
        lambda e: {f"{r.resource_type} ({r.scope_text})": _rule_row(r) for r in e.rules if r.owner == CONFIG_OWNER},
    ),
    Kind(
        "rollout_plan",
        tables.rollout_plans,
        ("id",),
        lambda e: {p.id: {"id": p.id, "spec": encode(p)} for p in e.plans},
    ),
    Kind(
        "document",
        tables.documents,
        ("name",),
        lambda e: {
            name: {"name": name, "body": body}
            for name, body in (
                ("settings", dict(e.settings)),
                ("access", encode(e.access)),
                ("runner_rules", {"rules": [encode(r) for r in e.runner_rules]}),
            )
            if body and body != {"rules": []}
        },
    ),
)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def access_bindings(docs: Mapping[str, Any]) -> tuple[Binding, ...]:
    """The stored access bindings; a store applied before bindings existed holds a `roles` map instead."""
    if "access" in docs:
        return decode_as(tuple[Binding, ...], docs["access"])
    known = {role.value for role in Role}
    return tuple(Binding(Role(r), tuple(s)) for r, s in docs.get("roles", {}).items() if r in known)


def estate_from_rows(rows: Mapping[str, list[Row]]) -> Estate:
    """Rebuild the domain estate from the rows of every kind's table."""
    versions: dict[str, list[ModuleVersion]] = {}
    for v in rows["module_version"]:
        lifecycle = Lifecycle(v.get("lifecycle") or Lifecycle.PUBLISHED)
        versions.setdefault(v["module"], []).append(
            ModuleVersion(
                v["module"], v["version"], v["source"], _frozen(v["inputs"]), lifecycle, v.get("lifecycle_reason") or ""
            )
        )
    docs = {d["name"]: d["body"] for d in rows["document"]}
    return Estate(
        env_types=tuple(EnvType(t["id"], t["rank"]) for t in rows["env_type"]),
        projects=tuple(
            Project(
                p["id"],
                p["owner"],
                tuple(Resource(alias, r["type"], _frozen(r["params"])) for alias, r in p["resources"].items()),
            )
            for p in rows["project"]
        ),
        environments=tuple(
            Environment(e["project"], e["id"], e["type"], _frozen(e["labels"])) for e in rows["environment"]
        ),
        modules=tuple(Module(m["id"], m["resource_type"], tuple(versions.get(m["id"], ()))) for m in rows["module"]),
        rules=tuple(
            ModuleRule(r["resource_type"], r["module"], r["version"], r["project"], r["env_type"], r["env"], r["owner"])
            for r in rows["module_rule"]
        ),
        plans=tuple(decode_as(RolloutPlan, p["spec"]) for p in rows["rollout_plan"]),
        access=access_bindings(docs),
        settings=_frozen(docs.get("settings", {})),
        runner_rules=tuple(decode_as(RunnerRule, r) for r in docs.get("runner_rules", {}).get("rules", [])),
    )
