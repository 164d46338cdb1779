"""Access control for the use cases: is this caller allowed to do this, to these environments?"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from estate.app.caller import Caller
from estate.domain.access import Action, Principal, Target, authorize
from estate.domain.ids import EnvRef
from estate.errors import Forbidden
from estate.store import Store

Envs = Iterable[EnvRef] | Callable[[], Iterable[EnvRef]]


class AccessControl:
    """Checks callers against the estate's access bindings (read fresh on every check: `apply` may change them)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def require(self, caller: Caller, action: Action, envs: Envs = ()) -> None:
        """Forbidden (naming the role and scope needed) unless `caller` may do `action` to every one of `envs`."""
        reason = self.denial(caller, action, envs)
        if reason is not None:
            raise Forbidden(reason, hint="ask an admin for a binding in estate-as-code (`access:`)")

    def denial(self, caller: Caller, action: Action, envs: Envs = ()) -> str | None:
        """Why `caller` may not do `action` to every one of `envs`, None if it may. `envs` may be a function, for
        environments that cost to list: it is called only when no binding scoped everywhere allows the action."""
        return self.denials(caller, {"": (action, envs)})[""]

    def denials(self, caller: Caller, checks: Mapping[str, tuple[Action, Envs]]) -> dict[str, str | None]:
        """`denial` of several checks, by name, reading the bindings and each environment's type once."""
        if caller.trusted:
            return dict.fromkeys(checks)
        bindings = self.store.access()
        principal = Principal(caller.subject, caller.groups)
        everywhere = [b for b in bindings if b.scope.everywhere]
        found: dict[str, str | None] = {}
        scoped: dict[str, tuple[Action, tuple[EnvRef, ...]]] = {}
        for name, (action, envs) in checks.items():
            if authorize(everywhere, principal, action).allowed:
                found[name] = None  # a binding everywhere allows it, whatever the environments
            else:
                scoped[name] = (action, tuple(envs() if callable(envs) else envs))
        wanted = list({r for _, refs in scoped.values() for r in refs})
        types = self.store.env_types(wanted) if wanted else {}
        decided: dict[tuple[Action, tuple[EnvRef, ...]], str | None] = {}
        for name, (action, refs) in scoped.items():
            if (action, refs) not in decided:
                decision = authorize(bindings, principal, action, [Target(r, types.get(r, "")) for r in refs])
                decided[action, refs] = None if decision.allowed else decision.reason
            found[name] = decided[action, refs]
        return {name: found[name] for name in checks}
