"""Wave membership: each target goes to the first wave that selects it; the rest are uncovered."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given
from hypothesis import strategies as st

from estate.domain.ids import EnvRef
from estate.domain.model import Environment
from estate.domain.plans import RolloutPlan, Wave
from estate.domain.selectors import Selector
from estate.domain.waves import assign_waves


def env(project: str, env_id: str, env_type: str, **labels: str) -> Environment:
    return Environment(project, env_id, env_type, MappingProxyType(labels))


def by_type(*types: str) -> Selector:
    return Selector(env_types=frozenset(types))


STANDARD = RolloutPlan(
    "standard",
    (
        Wave("ephemeral", by_type("ephemeral")),
        Wave("dev", by_type("development")),
        Wave("staging", by_type("staging")),
        Wave("production", by_type("production")),
    ),
)


def test_each_env_type_lands_in_its_wave_sorted_by_name() -> None:
    targets = [
        env("search", "prod", "production"),
        env("checkout", "eph-2", "ephemeral"),
        env("checkout", "eph-1", "ephemeral"),
        env("checkout", "dev", "development"),
        env("checkout", "prod", "production"),
    ]
    membership = assign_waves(STANDARD, targets)
    assert membership.waves == (
        (EnvRef("checkout", "eph-1"), EnvRef("checkout", "eph-2")),
        (EnvRef("checkout", "dev"),),
        (),
        (EnvRef("checkout", "prod"), EnvRef("search", "prod")),
    )
    assert membership.uncovered == ()
    assert membership.wave_of(EnvRef("search", "prod")) == 4


def test_the_first_matching_wave_wins() -> None:
    plan = RolloutPlan(
        "canary",
        (
            Wave("canary", Selector(labels=MappingProxyType({"canary": "true"}))),
            Wave("rest", Selector()),
        ),
    )
    targets = [env("a", "prod", "production", canary="true"), env("b", "prod", "production")]
    membership = assign_waves(plan, targets)
    assert membership.waves == ((EnvRef("a", "prod"),), (EnvRef("b", "prod"),))


def test_targets_no_wave_selects_are_uncovered() -> None:
    membership = assign_waves(STANDARD, [env("lab", "perf", "performance"), env("a", "dev", "development")])
    assert membership.uncovered == (EnvRef("lab", "perf"),)
    assert membership.wave_of(EnvRef("lab", "perf")) is None


def test_duplicate_targets_count_once() -> None:
    twice = env("a", "dev", "development")
    assert assign_waves(STANDARD, [twice, twice]).waves[1] == (EnvRef("a", "dev"),)


TYPES = ("ephemeral", "development", "staging", "production", "performance")


@given(
    st.lists(
        st.tuples(st.sampled_from(("a", "b", "c")), st.sampled_from(("x", "y", "z")), st.sampled_from(TYPES)),
        max_size=20,
    )
)
def test_every_target_is_in_exactly_one_place_whatever_the_order(rows: list[tuple[str, str, str]]) -> None:
    targets = {(p, e): env(p, e, t) for p, e, t in rows}  # one type per environment
    membership = assign_waves(STANDARD, list(targets.values()))
    placed = [ref for wave in membership.waves for ref in wave] + list(membership.uncovered)
    assert sorted(placed) == sorted(EnvRef(p, e) for p, e in targets)
    assert assign_waves(STANDARD, reversed(list(targets.values()))) == membership
    for refs in membership.waves:
        assert list(refs) == sorted(refs)
