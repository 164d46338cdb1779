"""Turn a validated document into domain objects."""

from __future__ import annotations

from types import MappingProxyType

from estate.config.schema import (
    ChangeWindowDoc,
    CompareGateDoc,
    Document,
    GateDoc,
    RolloutPlanDoc,
    RunnerRuleDoc,
    SelectorDoc,
    WaveDoc,
)
from estate.domain.access import AccessScope, Binding, Role
from estate.domain.alerts import parse_matchers
from estate.domain.change_windows import ChangeWindow, parse_clock, parse_days
from estate.domain.model import Environment, EnvType, Estate, Module, ModuleVersion, Project, Resource
from estate.domain.plans import (
    ApprovalGate,
    BakeGate,
    Better,
    CompareGate,
    Destructive,
    Gate,
    GateScope,
    Margin,
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
    if doc.compare is not None:
        return _compare(doc.compare)
    p = doc.prometheus
    assert p is not None  # GateDoc validates exactly one kind
    return PrometheusGate(
        p.query,
        p.max,
        p.min,
        p.interval,
        p.count,
        p.failure_limit,
        NoData(p.no_data),
        GateScope(p.scope),
        p.url,
        p.landed,
        p.landed_timeout,
    )


def _compare(c: CompareGateDoc) -> CompareGate:
    tolerance = (
        Margin(float(c.tolerance.rstrip("%")), percent=True) if isinstance(c.tolerance, str) else Margin(c.tolerance)
    )
    return CompareGate(
        c.query,
        Better(c.better),
        tolerance,
        c.confidence,
        c.interval,
        c.count,
        c.min_samples,
        selector(c.baseline) if c.baseline is not None else None,
        c.baseline_limit,
        c.url,
        c.landed,
        c.landed_timeout,
    )


def _window(doc: ChangeWindowDoc) -> ChangeWindow:
    return ChangeWindow(parse_days(doc.days), parse_clock(doc.start), parse_clock(doc.end), doc.timezone)


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
        tuple(_window(w) for w in doc.change_windows),
    )


def _plan(p: RolloutPlanDoc) -> RolloutPlan:
    return RolloutPlan(
        p.id,
        tuple(_wave(w) for w in p.waves),
        Destructive(p.destructive),
        p.description,
        parse_matchers(p.alert_selector) if p.alert_selector else (),
        p.mark_defective_on_failure,
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
        plans=tuple(_plan(p) for p in doc.rollout_plans),
        access=(
            *(
                Binding(
                    Role(b.role),
                    tuple(b.subjects),
                    AccessScope(
                        frozenset(b.scope.projects) if b.scope.projects is not None else None,
                        frozenset(b.scope.env_types) if b.scope.env_types is not None else None,
                    ),
                )
                for b in doc.access
            ),
            *(Binding(Role(role), tuple(subjects)) for role, subjects in doc.roles.items()),
        ),
        settings=MappingProxyType(doc.settings.model_dump()),
        runner_rules=tuple(runner_rule(r) for r in doc.runner_rules),
    )


def runner_rule(doc: RunnerRuleDoc) -> RunnerRule:
    return RunnerRule(doc.pool, doc.project, doc.env_type, doc.env, MappingProxyType(dict(doc.labels)))
