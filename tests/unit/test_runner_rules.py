"""Runner rules: the most specific rule picks an environment's runner pool; ties are validation errors with
file:line; the rules survive `estate apply` into the store."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate.config import load_estate
from estate.domain.model import Environment
from estate.domain.rules import Scope
from estate.domain.runner_rules import DEFAULT_POOL, RunnerRule, RunnerRuleTie, find_ties, resolve_pool, winners
from tests.unit.test_config_errors import BASE, _problems

PROJECTS = ["checkout", "payments"]
ENVS = ["eph-1", "dev", "prod"]
TYPES = ["ephemeral", "development", "production"]
LABELS = st.dictionaries(st.sampled_from(["region", "tier"]), st.sampled_from(["eu", "us", "gold"]), max_size=2)

envs = st.builds(
    Environment,
    project=st.sampled_from(PROJECTS),
    id=st.sampled_from(ENVS),
    type=st.sampled_from(TYPES),
    labels=LABELS.map(MappingProxyType),
)


@st.composite
def rules(draw: st.DrawFn) -> RunnerRule:
    scope = draw(st.sampled_from([s for s in Scope if s is not Scope.PIN]))
    project = draw(st.sampled_from(PROJECTS)) if scope in (Scope.PROJECT, Scope.PROJECT_ENV_TYPE, Scope.ENV) else None
    env_type = draw(st.sampled_from(TYPES)) if scope in (Scope.ENV_TYPE, Scope.PROJECT_ENV_TYPE) else None
    env = draw(st.sampled_from(ENVS)) if scope is Scope.ENV else None
    pool = draw(st.sampled_from(["eu", "us", "gpu"]))
    return RunnerRule(pool, project, env_type, env, MappingProxyType(draw(LABELS)))


def env(project: str = "checkout", id: str = "prod", type: str = "production", **labels: str) -> Environment:
    return Environment(project, id, type, MappingProxyType(labels))


@given(st.lists(rules(), max_size=10), envs)
def test_the_most_specific_matching_rule_picks_the_pool_or_it_is_a_tie(
    rule_list: list[RunnerRule], e: Environment
) -> None:
    matching = [r for r in rule_list if r.applies_to(e)]
    best = winners(rule_list, e)
    if not matching:
        assert resolve_pool(rule_list, e) == DEFAULT_POOL
    elif len(best) == 1:
        assert resolve_pool(rule_list, e) == best[0].pool
        assert all(r.specificity <= best[0].specificity for r in matching)
    else:
        with pytest.raises(RunnerRuleTie):
            resolve_pool(rule_list, e)
        assert find_ties(rule_list, [e]), "validation reports every tie resolution would meet"


@given(st.lists(rules(), max_size=10), envs)
def test_resolution_ignores_rule_order(rule_list: list[RunnerRule], e: Environment) -> None:
    forward, backward = winners(rule_list, e), winners(list(reversed(rule_list)), e)
    assert sorted(r.pool for r in forward) == sorted(r.pool for r in backward)


def test_labels_refine_a_scope_and_a_scope_beats_labels() -> None:
    eu = RunnerRule("eu", labels=MappingProxyType({"region": "eu"}))
    eu_gold = RunnerRule("eu-gold", labels=MappingProxyType({"region": "eu", "tier": "gold"}))
    prod = RunnerRule("prod", env_type="production")
    assert resolve_pool([eu, eu_gold], env(type="staging", region="eu")) == "eu"
    assert resolve_pool([eu, eu_gold], env(type="staging", region="eu", tier="gold")) == "eu-gold"
    assert resolve_pool([eu, eu_gold, prod], env(region="eu", tier="gold")) == "prod"
    assert resolve_pool([eu, prod], env(type="staging", region="us")) == DEFAULT_POOL


def test_two_label_rules_that_both_match_one_environment_tie() -> None:
    eu = RunnerRule("eu", labels=MappingProxyType({"region": "eu"}))
    gold = RunnerRule("gold", labels=MappingProxyType({"tier": "gold"}))
    with pytest.raises(RunnerRuleTie, match="checkout/prod: 2 runner rules of equal specificity"):
        resolve_pool([eu, gold], env(region="eu", tier="gold"))
    assert find_ties([eu, gold], [env(region="eu"), env(id="x", region="eu", tier="gold")]) == [
        (0, 1, "both match checkout/x")
    ]


RULES = """\
runner_rules:
  - {pool: eu, labels: {region: eu}}
  - {pool: gold, labels: {tier: gold}}
  - {pool: prod, env_type: production}
"""


def test_runner_rules_load_into_the_estate(tmp_path: Path) -> None:
    text = BASE.replace("{id: eph-1, type: ephemeral}", "{id: eph-1, type: ephemeral, labels: {region: eu}}")
    (tmp_path / "estate.yaml").write_text(text + RULES)
    estate = load_estate(tmp_path / "estate.yaml").estate
    pools = {str(e.ref): resolve_pool(estate.runner_rules, e) for e in estate.environments}
    assert pools == {"checkout/eph-1": "eu", "checkout/prod": "prod"}


def test_a_tie_on_a_declared_environment_is_a_validation_error_with_its_line(tmp_path: Path) -> None:
    text = BASE.replace(
        "{id: eph-1, type: ephemeral}", "{id: eph-1, type: ephemeral, labels: {region: eu, tier: gold}}"
    )
    assert _problems(tmp_path, text + RULES) == [
        f"{tmp_path / 'estate.yaml'}:20:5: runner_rules[1]: ties with runner_rules[0] (labels region=eu -> eu): "
        "both match checkout/eph-1; the most specific runner rule must be unique"
    ]


def test_runner_rules_name_known_things_only(tmp_path: Path) -> None:
    where = f"{tmp_path / 'estate.yaml'}"
    (bad_pool,) = _problems(tmp_path, BASE + "runner_rules:\n  - {pool: EU!}\n")
    assert bad_pool.startswith(f"{where}:19:12: runner_rules[0].pool: String should match pattern")
    bad = "runner_rules:\n  - {pool: eu, project: nope, env_type: staging}\n  - {pool: x, env: prod}\n"
    problems = _problems(tmp_path, BASE + bad)
    assert f"{where}:19:25: runner_rules[0].project: unknown project 'nope'" in problems
    assert f"{where}:19:41: runner_rules[0].env_type: unknown env type 'staging'" in problems
    assert any(p.startswith(f"{where}:20:") and "must also name its project" in p for p in problems)
