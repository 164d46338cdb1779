"""Access control for the use cases: is this caller allowed to do this, to these environments?"""

from __future__ import annotations

from collections.abc import Iterable

from estate.app.caller import Caller
from estate.domain.access import Action, Principal, Target, authorize
from estate.domain.ids import EnvRef
from estate.errors import Forbidden
from estate.store import Store


class AccessControl:
    """Checks callers against the estate's access bindings (read fresh on every check: `apply` may change them)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def require(self, caller: Caller, action: Action, envs: Iterable[EnvRef] = ()) -> None:
        """Forbidden (naming the role and scope needed) unless `caller` may do `action` to every one of `envs`."""
        if caller.trusted:
            return
        refs = list(envs)
        types = {e.ref: e.type for e in self.store.environments(refs)} if refs else {}
        targets = [Target(ref, types.get(ref, "")) for ref in refs]
        decision = authorize(self.store.access(), Principal(caller.subject, caller.groups), action, targets)
        if not decision.allowed:
            raise Forbidden(decision.reason, hint="ask an admin for a binding in estate-as-code (`access:`)")
