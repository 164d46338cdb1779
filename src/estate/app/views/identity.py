"""Views of API tokens (never their secret, except once when created)."""

from __future__ import annotations

from datetime import datetime

from estate.app.views import View


class TokenView(View):
    id: str
    user: str
    groups: list[str]
    description: str
    state: str  # active | expired | revoked
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedTokenView(TokenView):
    token: str  # shown once: store it now (e.g. `estate login`); Estate keeps only a hash


class GrantView(View):
    role: str
    scope: str  # "everywhere", or the projects and env types it covers


class WhoAmIView(View):
    """The subject a request authenticated as, and what its bindings grant it."""

    subject: str
    auth: str  # local | token | oidc
    groups: list[str]
    grants: list[GrantView]
