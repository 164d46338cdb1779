"""Access control for the use cases: is this caller allowed to do this, to these environments?"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
        if caller.trusted:
            return None
        bindings = self.store.access()
        principal = Principal(caller.subject, caller.groups)
        if callable(envs):
            if authorize([b for b in bindings if b.scope.everywhere], principal, action).allowed:
                return None
            envs = envs()
        refs = list(envs)
        types = {e.ref: e.type for e in self.store.environments(refs)} if refs else {}
        decision = authorize(bindings, principal, action, [Target(ref, types.get(ref, "")) for ref in refs])
        return None if decision.allowed else decision.reason
