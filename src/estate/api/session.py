"""A browser's session: the credential a person logged in to the console with (an API token or an OIDC JWT), in
a cookie page scripts cannot read (HttpOnly), sent over HTTPS or loopback only (Secure, `__Host-`) and never
with a request another site starts (SameSite=Strict). A request that changes something and authenticates with
the cookie must also carry the CSRF token derived from it in `X-CSRF-Token` (the pages hold it; another site
can neither read it nor set the header)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

COOKIE = "__Host-estate-session"
CSRF_HEADER = "X-CSRF-Token"
MAX_AGE_SECONDS = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def credential(request: Request) -> str | None:
    """The credential of the request's session cookie, if any."""
    return request.cookies.get(COOKIE) or None


def csrf_token(credential: str) -> str:
    """The CSRF token of a session: only who holds the credential can compute it."""
    return hmac.new(credential.encode(), b"estate console csrf", hashlib.sha256).hexdigest()


def csrf_ok(credential: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(credential), presented)


def open_session(response: Response, credential: str) -> None:
    response.set_cookie(
        COOKIE, credential, max_age=MAX_AGE_SECONDS, path="/", secure=True, httponly=True, samesite="strict"
    )


def close_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
