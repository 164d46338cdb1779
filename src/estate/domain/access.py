"""Who may do what, where: built-in roles, bindings of subjects to roles in a scope, and the decision.

Pure. A `Binding` grants a role to subjects (`alex`, `group:platform`) in a scope (projects and/or env types;
an empty scope is everywhere). `authorize` answers one question: may this principal do this kind of thing
to these environments? Every environment must be covered by a binding of a role that allows it; the answer
names the role and scope that would have been needed. Roles nest: `admin` implies every other role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from estate.domain.ids import EnvRef


class Role(StrEnum):
    """The built-in roles."""

    VIEWER = "viewer"  # read everything
    DEPLOYER = "deployer"  # deploy, plan-only, drift, roll an environment back to a deployment
    OPERATOR = "operator"  # start, promote, pause, resume, abort, roll back, rerun, retarget rollouts
    APPROVER = "approver"  # approve approval gates
    ADMIN = "admin"  # apply estate-as-code, publish modules, manage tokens; implies every role


class Action(StrEnum):
    """What a request does, as far as access is concerned."""

    READ = "read"
    DEPLOY = "deploy"
    OPERATE = "operate"
    APPROVE = "approve"
    ADMINISTER = "administer"


#: Which role allows which action (admin is handled by implying every role).
ALLOWS: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {
        Role.VIEWER: frozenset({Action.READ}),
        Role.DEPLOYER: frozenset({Action.READ, Action.DEPLOY}),
        Role.OPERATOR: frozenset({Action.READ, Action.OPERATE}),
        Role.APPROVER: frozenset({Action.READ, Action.APPROVE}),
        Role.ADMIN: frozenset(Action),
    }
)

#: The least role that allows each action, as refusals name it.
NEEDED: Mapping[Action, Role] = MappingProxyType(
    {
        Action.READ: Role.VIEWER,
        Action.DEPLOY: Role.DEPLOYER,
        Action.OPERATE: Role.OPERATOR,
        Action.APPROVE: Role.APPROVER,
        Action.ADMINISTER: Role.ADMIN,
    }
)

GROUP_PREFIX = "group:"


@dataclass(frozen=True)
class AccessScope:
    """Where a binding applies: these projects and/or env types (None: any)."""

    projects: frozenset[str] | None = None
    env_types: frozenset[str] | None = None

    @property
    def everywhere(self) -> bool:
        return self.projects is None and self.env_types is None

    def covers(self, project: str, env_type: str) -> bool:
        return (self.projects is None or project in self.projects) and (
            self.env_types is None or env_type in self.env_types
        )

    def __str__(self) -> str:
        parts = [
            f"{name} {', '.join(sorted(values))}"
            for name, values in (("projects", self.projects), ("env types", self.env_types))
            if values is not None
        ]
        return " and ".join(parts) or "everywhere"


@dataclass(frozen=True)
class Binding:
    """`role` for `subjects` (user names, or `group:NAME`) in `scope`."""

    role: Role
    subjects: tuple[str, ...]
    scope: AccessScope = field(default_factory=AccessScope)


@dataclass(frozen=True)
class Principal:
    """An authenticated subject and the groups its identity provider (or token) says it belongs to."""

    subject: str
    groups: frozenset[str] = frozenset()

    def matches(self, subject: str) -> bool:
        if subject.startswith(GROUP_PREFIX):
            return subject.removeprefix(GROUP_PREFIX) in self.groups
        return subject == self.subject


@dataclass(frozen=True)
class Target:
    """An environment a request would act on, with what scopes are decided by."""

    env: EnvRef
    env_type: str


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str = ""


def roles_of(bindings: Iterable[Binding], principal: Principal, target: Target | None = None) -> frozenset[Role]:
    """The roles `principal` holds (for `target`, when given: only bindings whose scope covers it)."""
    held: set[Role] = set()
    for b in bindings:
        if any(principal.matches(s) for s in b.subjects) and (
            target is None or b.scope.covers(target.env.project, target.env_type)
        ):
            held.update(Role if b.role is Role.ADMIN else {b.role})
    return frozenset(held)


def authorize(
    bindings: Sequence[Binding], principal: Principal, action: Action, targets: Sequence[Target] = ()
) -> AccessDecision:
    """May `principal` do `action` to every one of `targets`? Without targets (apply, publish, tokens), only a
    binding scoped everywhere counts."""
    needed = NEEDED[action]
    if action is Action.READ and not targets and roles_of(bindings, principal):
        return AccessDecision(True)  # any role anywhere reads the estate (its scope limits what it changes)
    if not targets:
        if action in _allowed([b for b in bindings if b.scope.everywhere], principal):
            return AccessDecision(True)
        return AccessDecision(False, f"{principal.subject} may not {action}: that needs role {needed} everywhere")
    uncovered = [t for t in targets if action not in _allowed(bindings, principal, t)]
    if not uncovered:
        return AccessDecision(True)
    scopes = sorted({f"project {t.env.project} / env type {t.env_type}" for t in uncovered})
    shown = ", ".join(str(t.env) for t in uncovered[:5])
    more = f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else ""
    return AccessDecision(
        False,
        f"{principal.subject} may not {action} {shown}{more}: that needs role {needed} "
        f"in a scope covering {'; '.join(scopes)}",
    )


def _allowed(bindings: Iterable[Binding], principal: Principal, target: Target | None = None) -> set[Action]:
    return {a for role in roles_of(bindings, principal, target) for a in ALLOWS[role]}
