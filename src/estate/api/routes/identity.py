"""Identity: who am I, and API tokens (admins create, list and revoke them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import Field

from estate.api.deps import Estate, Who
from estate.api.problems import ERRORS
from estate.api.requests import Body
from estate.app.views.identity import IssuedTokenView, TokenView, WhoAmIView

router = APIRouter(tags=["identity"], responses=ERRORS)
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="a token's id (never its secret)")]


@router.get("/whoami")
def whoami(estate: Estate, who: Who) -> WhoAmIView:
    """The subject this request authenticated as, how, its groups, and the roles its bindings grant."""
    return estate.identity.whoami(who)


class TokenRequest(Body):
    user: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$", description="whom the token authenticates")
    groups: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$")]] = Field([], max_length=64)
    expires_in_seconds: int | None = Field(None, ge=1, le=10 * 365 * 86400)
    description: str = Field("", max_length=1000)


@router.post("/tokens", status_code=201)
def create_token(body: TokenRequest, estate: Estate, who: Who) -> IssuedTokenView:
    """A new token for `user` (admin); the answer is the only time its secret is shown."""
    expires = timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
    return estate.identity.create_token(
        who, body.user, groups=body.groups, expires_in=expires, description=body.description
    )


@router.get("/tokens")
def tokens(estate: Estate, who: Who) -> list[TokenView]:
    """Every token, without its secret (admin)."""
    return estate.identity.list_tokens(who)


@router.post("/tokens/{token_id}/revoke")
def revoke(token_id: TokenId, estate: Estate, who: Who) -> TokenView:
    """Revoke a token (admin): the very next request presenting it is refused."""
    return estate.identity.revoke_token(who, token_id)
