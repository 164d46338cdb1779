"""Turn a validated document into domain objects."""

from __future__ import annotations

from types import MappingProxyType

from estate.config.schema import Document, GateDoc, RunnerRuleDoc, SelectorDoc, WaveDoc
from estate.domain.model import Environment, EnvType, Estate, Module, ModuleVersion, Project, Resource
from estate.domain.plans import (
    ApprovalGate,
    BakeGate,
    Destructive,
    Gate,
    GateScope,
    NoData,
    OnFailure,
    PrometheusGate,
    RolloutPlan,
    Tolerance,
    Wave,
)
from estate.domain.rules import ModuleRule
from estate.domain.runner_rules import RunnerRule
from estate.domain.selectors import LabelExpression, LabelOp, Selector


def selector(doc: SelectorDoc) -> Selector:
    types = [doc.env_type] if isinstance(doc.env_type, str) else doc.env_type
    return Selector(
        env_types=frozenset(types) if types is not None else None,
        labels=MappingProxyType(dict(doc.labels)),
        expressions=tuple(
            LabelExpression(e.key, LabelOp(e.operator), frozenset(e.values)) for e in doc.match_expressions
        ),
        projects=frozenset(doc.projects) if doc.projects is not None else None,
        envs=frozenset(doc.envs) if doc.envs is not None else None,
    )


def _gate(doc: GateDoc) -> Gate:
    if doc.bake is not None:
        return BakeGate(doc.bake)
    if doc.approval is not None:
        return ApprovalGate(doc.approval.role, doc.approval.four_eyes)
    p = doc.prometheus
    assert p is not None  # GateDoc validates exactly one kind
    return PrometheusGate(
        p.query, p.max, p.min, p.interval, p.count, p.failure_limit, NoData(p.no_data), GateScope(p.scope), p.url
    )


def _tolerance(value: int | str) -> Tolerance:
    if isinstance(value, str):
        return Tolerance(percent=float(value.rstrip("%")))
    return Tolerance(count=value)


def _wave(doc: WaveDoc) -> Wave:
    return Wave(
        doc.name,
        selector(doc.select),
        doc.max_parallel,
        _tolerance(doc.failure_tolerance),
        tuple(_gate(g) for g in doc.gates),
        OnFailure(doc.on_failure),
        doc.auto_promote,
    )


def environments(doc: Document) -> tuple[Environment, ...]:
    return tuple(
        Environment(p.id, e.id, e.type, MappingProxyType(dict(e.labels))) for p in doc.projects for e in p.environments
    )


def to_estate(doc: Document) -> Estate:
    """Build the domain `Estate` from a document that passed every check."""
    return Estate(
        env_types=tuple(EnvType(t.id, t.rank) for t in doc.env_types),
        projects=tuple(
            Project(
                p.id,
                p.owner,
                tuple(Resource(a, r.type, MappingProxyType(dict(r.params))) for a, r in p.resources.items()),
            )
            for p in doc.projects
        ),
        environments=environments(doc),
        modules=tuple(
            Module(
                m.id,
                m.resource_type,
                tuple(ModuleVersion(m.id, v.version, v.source, MappingProxyType(dict(v.inputs))) for v in m.versions),
            )
            for m in doc.modules
        ),
        rules=tuple(
            ModuleRule(r.resource_type, r.module, r.version, r.project, r.env_type, r.env) for r in doc.module_rules
        ),
        plans=tuple(
            RolloutPlan(p.id, tuple(_wave(w) for w in p.waves), Destructive(p.destructive), p.description)
            for p in doc.rollout_plans
        ),
        roles=MappingProxyType({k: tuple(v) for k, v in doc.roles.items()}),
        settings=MappingProxyType(doc.settings.model_dump()),
        runner_rules=tuple(runner_rule(r) for r in doc.runner_rules),
    )


def runner_rule(doc: RunnerRuleDoc) -> RunnerRule:
    return RunnerRule(doc.pool, doc.project, doc.env_type, doc.env, MappingProxyType(dict(doc.labels)))
