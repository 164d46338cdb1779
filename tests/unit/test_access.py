"""Access decisions: roles allow actions, scopes limit where, groups match, refusals name what was needed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from estate.domain.access import (
    ALLOWS,
    AccessScope,
    Action,
    Binding,
    Principal,
    Role,
    Target,
    authorize,
    roles_of,
)
from estate.domain.ids import EnvRef

PROD = Target(EnvRef("checkout", "prod-eu"), "production")
STAGING = Target(EnvRef("checkout", "staging"), "staging")
OTHER = Target(EnvRef("payments", "prod"), "production")
BINDINGS = (
    Binding(Role.ADMIN, ("root",)),
    Binding(Role.OPERATOR, ("alex", "group:platform")),
    Binding(Role.APPROVER, ("bob", "carol"), AccessScope(env_types=frozenset({"production"}))),
    Binding(Role.DEPLOYER, ("group:team-atlas",), AccessScope(projects=frozenset({"checkout"}))),
    Binding(Role.VIEWER, ("group:everyone",)),
)


def test_each_role_allows_exactly_its_actions_and_admin_implies_all() -> None:
    for role in Role:
        principal = Principal(f"{role}-user")
        bindings = [Binding(role, (principal.subject,))]
        allowed = {a for a in Action if authorize(bindings, principal, a, [PROD]).allowed}
        assert allowed == set(ALLOWS[role]), role
    assert roles_of([Binding(Role.ADMIN, ("root",))], Principal("root")) == frozenset(Role)


def test_a_scope_limits_where_a_role_holds_and_the_refusal_names_role_and_scope() -> None:
    bob = Principal("bob")
    assert authorize(BINDINGS, bob, Action.APPROVE, [PROD, OTHER]).allowed
    refused = authorize(BINDINGS, bob, Action.APPROVE, [PROD, STAGING])
    assert not refused.allowed
    assert refused.reason == (
        "bob may not approve checkout/staging: that needs role approver in a scope covering "
        "project checkout / env type staging"
    )
    assert not authorize(BINDINGS, bob, Action.OPERATE, [PROD]).allowed


def test_groups_match_group_subjects_only() -> None:
    atlas = Principal("dana", frozenset({"team-atlas", "everyone"}))
    assert authorize(BINDINGS, atlas, Action.DEPLOY, [PROD, STAGING]).allowed
    assert not authorize(BINDINGS, atlas, Action.DEPLOY, [OTHER]).allowed, "scoped to project checkout"
    assert authorize(BINDINGS, atlas, Action.READ, [OTHER]).allowed
    impostor = Principal("group:platform")  # a user named like a group holds nothing of the group's
    assert not authorize(BINDINGS, impostor, Action.OPERATE, [PROD]).allowed


def test_estate_wide_actions_need_an_unscoped_binding() -> None:
    assert authorize(BINDINGS, Principal("root"), Action.ADMINISTER).allowed
    scoped_admin = [Binding(Role.ADMIN, ("eve",), AccessScope(projects=frozenset({"checkout"})))]
    assert authorize(scoped_admin, Principal("eve"), Action.DEPLOY, [PROD]).allowed
    refused = authorize(scoped_admin, Principal("eve"), Action.ADMINISTER)
    assert refused.reason == "eve may not administer: that needs role admin everywhere"


subjects = st.sampled_from(("alex", "bob", "group:a", "group:b"))
scopes = st.builds(
    AccessScope,
    st.one_of(st.none(), st.frozensets(st.sampled_from(("checkout", "payments")), min_size=1)),
    st.one_of(st.none(), st.frozensets(st.sampled_from(("staging", "production")), min_size=1)),
)
bindings = st.lists(st.builds(Binding, st.sampled_from(Role), st.tuples(subjects), scopes), max_size=6)
targets = st.lists(st.sampled_from((PROD, STAGING, OTHER)), max_size=3)
principals = st.builds(Principal, st.sampled_from(("alex", "bob", "zoe")), st.frozensets(st.sampled_from("ab")))


@given(bindings, bindings, principals, st.sampled_from(Action), targets)
def test_more_bindings_never_take_a_permission_away(
    first: list[Binding], more: list[Binding], who: Principal, action: Action, where: list[Target]
) -> None:
    if authorize(first, who, action, where).allowed:
        assert authorize(first + more, who, action, where).allowed


@given(bindings, principals, st.sampled_from(Action), targets)
def test_allowed_means_every_target_is_covered_by_a_matching_binding(
    given_bindings: list[Binding], who: Principal, action: Action, where: list[Target]
) -> None:
    decision = authorize(given_bindings, who, action, where)
    for target in where:
        covering = [
            b
            for b in given_bindings
            if any(who.matches(s) for s in b.subjects)
            and b.scope.covers(target.env.project, target.env_type)
            and (action in ALLOWS[b.role])
        ]
        if decision.allowed:
            assert covering, f"{target} allowed without a covering binding"
    assert decision.allowed or decision.reason.startswith(f"{who.subject} may not {action}")
