"""Property tests: rule resolution (most specific wins) and selectors."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from estate.domain.model import Environment, Estate, Module, Project, Resource
from estate.domain.rules import ModuleRule, RuleIndex, Scope, find_ties, resolve_rule
from estate.domain.selectors import LabelExpression, LabelOp, Selector
from estate.domain.usage import module_usage, versions_by_env

PROJECTS = ["checkout", "payments"]
ENVS = ["eph-1", "dev", "prod"]
TYPES = ["ephemeral", "development", "production"]
VERSIONS = ["1.0.0", "2.0.0", "2.0.1"]

envs = st.builds(
    Environment,
    project=st.sampled_from(PROJECTS),
    id=st.sampled_from(ENVS),
    type=st.sampled_from(TYPES),
    labels=st.dictionaries(st.sampled_from(["region", "tier"]), st.sampled_from(["eu", "us", "gold"]), max_size=2),
)


@st.composite
def rules(draw: st.DrawFn) -> ModuleRule:
    scope = draw(st.sampled_from(list(Scope)[:-1]))  # config rules; pins are tested separately
    project = draw(st.sampled_from(PROJECTS)) if scope in (Scope.PROJECT, Scope.PROJECT_ENV_TYPE, Scope.ENV) else None
    env_type = draw(st.sampled_from(TYPES)) if scope in (Scope.ENV_TYPE, Scope.PROJECT_ENV_TYPE) else None
    env = draw(st.sampled_from(ENVS)) if scope is Scope.ENV else None
    return ModuleRule("postgres", "postgres", draw(st.sampled_from(VERSIONS)), project, env_type, env)


def _untied(rule_list: list[ModuleRule]) -> list[ModuleRule]:
    drop = {second for _, second in find_ties(rule_list)}
    return [r for i, r in enumerate(rule_list) if i not in drop]


@given(st.lists(rules(), max_size=12).map(_untied), envs)
def test_the_most_specific_applicable_rule_wins(rule_list: list[ModuleRule], env: Environment) -> None:
    chosen = resolve_rule(rule_list, "postgres", env.project, env.id, env.type)
    applicable = [r for r in rule_list if r.applies_to(env.project, env.id, env.type)]
    if not applicable:
        assert chosen is None
        return
    assert chosen is not None
    assert chosen in applicable
    assert all(r.scope <= chosen.scope for r in applicable)


@given(st.lists(rules(), max_size=12).map(_untied), rules(), envs)
def test_a_less_specific_rule_never_changes_an_env_a_more_specific_rule_covers(
    rule_list: list[ModuleRule], extra: ModuleRule, env: Environment
) -> None:
    before = resolve_rule(rule_list, "postgres", env.project, env.id, env.type)
    if before is None or extra.scope >= before.scope:
        return
    after = resolve_rule([*rule_list, extra], "postgres", env.project, env.id, env.type)
    assert after == before


@given(st.lists(rules(), max_size=8).map(_untied), st.sampled_from(VERSIONS), envs)
def test_a_rollout_pin_beats_every_config_rule(rule_list: list[ModuleRule], version: str, env: Environment) -> None:
    pin = ModuleRule("postgres", "postgres", version, env.project, None, env.id, owner="rollout:r1")
    chosen = resolve_rule([*rule_list, pin], "postgres", env.project, env.id, env.type)
    assert chosen == pin


@given(st.lists(rules(), max_size=12).map(_untied), envs)
def test_resolution_ignores_rule_order(rule_list: list[ModuleRule], env: Environment) -> None:
    forward = resolve_rule(rule_list, "postgres", env.project, env.id, env.type)
    backward = resolve_rule(list(reversed(rule_list)), "postgres", env.project, env.id, env.type)
    assert forward == backward


label_values = st.frozensets(st.sampled_from(["eu", "us", "gold"]), min_size=1)
expressions = st.one_of(
    st.builds(
        LabelExpression,
        st.sampled_from(["region", "tier"]),
        st.sampled_from([LabelOp.IN, LabelOp.NOT_IN]),
        label_values,
    ),
    st.builds(
        LabelExpression, st.sampled_from(["region", "tier"]), st.sampled_from([LabelOp.EXISTS, LabelOp.DOES_NOT_EXIST])
    ),
)
selectors = st.builds(
    Selector,
    env_types=st.none() | st.frozensets(st.sampled_from(TYPES)),
    labels=st.dictionaries(st.sampled_from(["region", "tier"]), st.sampled_from(["eu", "us", "gold"]), max_size=1),
    expressions=st.lists(expressions, max_size=2).map(tuple),
    projects=st.none() | st.frozensets(st.sampled_from(PROJECTS)),
    envs=st.none() | st.frozensets(st.sampled_from([*ENVS, "checkout/dev"])),
)


@given(envs)
def test_the_empty_selector_matches_everything(env: Environment) -> None:
    assert Selector().matches(env)


@given(selectors, envs)
def test_a_selector_is_the_conjunction_of_its_criteria(sel: Selector, env: Environment) -> None:
    parts = [
        Selector(env_types=sel.env_types),
        Selector(labels=sel.labels),
        Selector(projects=sel.projects),
        Selector(envs=sel.envs),
        *(Selector(expressions=(e,)) for e in sel.expressions),
    ]
    assert sel.matches(env) == all(p.matches(env) for p in parts)


@given(selectors, st.lists(envs, max_size=6))
def test_select_keeps_order_and_only_matches(sel: Selector, env_list: list[Environment]) -> None:
    assert sel.select(env_list) == [e for e in env_list if sel.matches(e)]


@given(st.sampled_from(["region", "tier"]), label_values, envs)
def test_in_and_not_in_are_complements(key: str, values: frozenset[str], env: Environment) -> None:
    in_ = LabelExpression(key, LabelOp.IN, values).holds(env.labels)
    not_in = LabelExpression(key, LabelOp.NOT_IN, values).holds(env.labels)
    assert in_ != not_in


@given(st.sampled_from(["region", "tier"]), envs)
def test_exists_and_does_not_exist_are_complements(key: str, env: Environment) -> None:
    exists = LabelExpression(key, LabelOp.EXISTS).holds(env.labels)
    assert exists != LabelExpression(key, LabelOp.DOES_NOT_EXIST).holds(env.labels)
    assert exists == (key in env.labels)


def test_env_names_match_bare_or_qualified() -> None:
    env = Environment("checkout", "dev", "development")
    assert Selector(envs=frozenset({"dev"})).matches(env)
    assert Selector(envs=frozenset({"checkout/dev"})).matches(env)
    assert not Selector(envs=frozenset({"payments/dev"})).matches(env)


@given(st.lists(rules(), max_size=12).map(_untied), st.lists(st.sampled_from(VERSIONS), max_size=3), envs)
def test_the_rule_index_resolves_like_a_scan_of_every_rule(
    rule_list: list[ModuleRule], pinned: list[str], env: Environment
) -> None:
    pins = [
        ModuleRule("postgres", "postgres", v, env.project, None, env.id, owner=f"rollout:r{i}")
        for i, v in enumerate(pinned[:1])
    ]
    everything = [*rule_list, *pins]
    expected = resolve_rule(everything, "postgres", env.project, env.id, env.type)
    assert RuleIndex(everything).resolve("postgres", env.project, env.id, env.type) == expected


@given(st.lists(rules(), max_size=12).map(_untied), st.lists(envs, max_size=6, unique_by=lambda e: e.ref))
def test_who_runs_what_agrees_with_the_usage_of_each_module(
    rule_list: list[ModuleRule], env_list: list[Environment]
) -> None:
    estate = Estate(
        projects=tuple(Project(p, f"team-{p}", (Resource("db", "postgres"),)) for p in PROJECTS),
        environments=tuple(env_list),
        modules=(Module("postgres", "postgres"),),
        rules=tuple(rule_list),
    )
    running = versions_by_env(estate)
    assert set(running) == {e.ref for e in env_list}
    used = {b.env.ref: b.version for b in module_usage(estate, "postgres")}
    assert {ref: v["postgres"] for ref, v in running.items() if "postgres" in v} == used
