"""Identity use cases: API tokens (create, list, revoke) and turning a presented credential into a `Caller`.

A token is shown once, when created; the store keeps a hash. Authentication happens on every request, so a
revoked or expired token is refused on the very next one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from estate.app.access import AccessControl
from estate.app.audit import AuditTrail
from estate.app.caller import Caller
from estate.app.views.identity import GrantView, IssuedTokenView, TokenView, WhoAmIView
from estate.domain.access import Action, Principal
from estate.errors import InputError, NotFoundError, Unauthenticated
from estate.identity import tokens
from estate.identity.oidc import OidcSettings, OidcVerifier
from estate.store import Store
from estate.store.tokens import TokenRecord, TokenStore

LAST_USED_RESOLUTION = timedelta(minutes=1)


class Identity:
    """Who is calling, and the tokens that say so."""

    def __init__(self, store: Store, audit: AuditTrail, access: AccessControl, now: Callable[[], datetime]) -> None:
        self.store = store
        self.tokens = TokenStore(store)
        self.audit = audit
        self.access = access
        self.now = now
        self._oidc: tuple[OidcSettings, OidcVerifier] | None = None

    def create_token(
        self,
        caller: Caller,
        user: str,
        *,
        groups: Sequence[str] = (),
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> IssuedTokenView:
        """A new token for `user`; the returned `token` is the only time the secret is seen."""
        with self.audit.attempt(caller, "token create", f"user:{user}", {"groups": list(groups)}) as attempt:
            self.access.require(caller, Action.ADMINISTER)
            if not user.strip():
                raise InputError("a token needs a user name")
            issued = tokens.new_token()
            now = self.now()
            record = TokenRecord(
                id=issued.id,
                user=user,
                groups=tuple(groups),
                secret_hash=tokens.digest(issued.secret),
                description=description,
                created_at=now,
                created_by=caller.subject,
                expires_at=now + expires_in if expires_in else None,
            )
            self.tokens.add(record)
            attempt.target = f"token:{issued.id}"
        return IssuedTokenView(**_view(record, now).model_dump(), token=str(issued))

    def list_tokens(self, caller: Caller) -> list[TokenView]:
        self.access.require(caller, Action.ADMINISTER)
        now = self.now()
        return [_view(r, now) for r in self.tokens.list()]

    def revoke_token(self, caller: Caller, token_id: str) -> TokenView:
        """Effective on the very next request that presents it."""
        with self.audit.attempt(caller, "token revoke", f"token:{token_id}"):
            self.access.require(caller, Action.ADMINISTER)
            return _view(self.tokens.revoke(token_id, caller.subject, self.now()), self.now())

    def whoami(self, caller: Caller) -> WhoAmIView:
        principal = Principal(caller.subject, caller.groups)
        grants = [
            GrantView(role=str(b.role), scope=str(b.scope))
            for b in self.store.access()
            if any(principal.matches(s) for s in b.subjects)
        ]
        return WhoAmIView(subject=caller.subject, auth=caller.auth, groups=sorted(caller.groups), grants=grants)

    def authenticate(self, credential: str, *, source: str, request_id: str | None = None) -> Caller:
        """The caller a bearer credential (an API token or an OIDC JWT) proves; Unauthenticated otherwise."""
        if tokens.looks_like_token(credential):
            return self._by_token(credential, source, request_id)
        verifier = self._verifier()
        if verifier is None:
            raise Unauthenticated("not an API token, and no OIDC issuer is configured (settings.oidc)")
        found = verifier.verify(credential)
        return Caller(found.subject, "oidc", source, request_id, found.groups)

    def _by_token(self, credential: str, source: str, request_id: str | None) -> Caller:
        presented = tokens.parse(credential)
        try:
            record = self.tokens.get(presented.id)
        except NotFoundError:
            raise Unauthenticated("unknown API token") from None
        now = self.now()
        if not tokens.matches(presented.secret, record.secret_hash):
            raise Unauthenticated("unknown API token")
        if record.revoked_at is not None:
            raise Unauthenticated(f"API token {record.id} was revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthenticated(f"API token {record.id} expired at {record.expires_at:%Y-%m-%d %H:%M} UTC")
        if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
            self.tokens.used(record.id, now)  # at most one write a minute per token, not one per request
        return Caller(record.user, "token", source, request_id, frozenset(record.groups))

    def _verifier(self) -> OidcVerifier | None:
        settings = OidcSettings.from_settings(dict(self.store.settings().get("oidc") or {}))
        if settings is None:
            return None
        if self._oidc is None or self._oidc[0] != settings:
            self._oidc = (settings, OidcVerifier(settings))
        return self._oidc[1]


def _view(record: TokenRecord, now: datetime) -> TokenView:
    state = (
        "revoked" if record.revoked_at else ("expired" if record.expires_at and record.expires_at <= now else "active")
    )
    return TokenView(
        id=record.id,
        user=record.user,
        groups=list(record.groups),
        description=record.description,
        state=state,
        created_at=record.created_at,
        created_by=record.created_by,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=record.last_used_at,
    )
