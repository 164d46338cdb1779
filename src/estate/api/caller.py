"""Who a request acts for: the subject its credential proves (an API token or an OIDC JWT, as a bearer token,
or as the password of basic auth for clients that only speak that, e.g. Alertmanager), never what the client
says. A request without a valid credential is refused (401, audited as `denied`); an address that
keeps failing is slowed down (429). The request id comes from `X-Request-ID` or is made up, and is echoed."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Annotated

from fastapi import Depends, Header, Request

from estate.app import App, Caller
from estate.app.audit import Attempt
from estate.domain.access import Action
from estate.errors import InputError, Unauthenticated

ANONYMOUS = "anonymous"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(request: Request) -> str:
    """The request's id: the client's `X-Request-ID` if it is sane, else a new one (kept for the response)."""
    found = getattr(request.state, "request_id", None)
    if found is None:
        given = request.headers.get("x-request-id", "")
        found = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = found
    return str(found)


def caller(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer <API token or OIDC JWT>`", include_in_schema=False)
    ] = None,
    estate_actor: Annotated[str | None, Header(alias="Estate-Actor", include_in_schema=False)] = None,
) -> Caller:
    app: App = request.app.state.estate
    source = f"http:{request.client.host if request.client else 'unknown'}"
    rid = request_id(request)
    if estate_actor is not None:
        raise InputError(
            "a server does not take the actor from the request (Estate-Actor, --as): it is the authenticated subject",
            hint="present your own token (estate login), or run the CLI embedded on the store's machine",
        )
    throttle = request.app.state.auth_throttle
    throttle.check(source)
    try:
        user, credential = _credential(authorization or "")
        found = app.identity.authenticate(credential, source=source, request_id=rid)
        if user is not None and user != found.subject:
            raise Unauthenticated("basic auth: the user name is not the one the token authenticates")
    except Unauthenticated as exc:
        throttle.failed(source)
        anonymous = Caller(ANONYMOUS, auth="none", source=source, request_id=rid)
        attempt = Attempt(f"{request.method} {request.url.path}", outcome="denied", reason=exc.message)
        app.audit.record(anonymous, "authenticate", attempt)
        raise
    throttle.succeeded(source)
    return found


def _credential(authorization: str) -> tuple[str | None, str]:
    """(basic auth's user name or None, the credential) of an Authorization header; Unauthenticated otherwise."""
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return None, value
    if scheme.lower() == "basic" and value:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("basic auth: not base64 of user:password") from None
        if sep and password:
            return user, password
    raise Unauthenticated(
        "authentication required: send Authorization: Bearer <token> (or basic auth, token as password)"
    )


def reader(request: Request, who: Annotated[Caller, Depends(caller)]) -> Caller:
    """An authenticated caller allowed to read (any role anywhere)."""
    app: App = request.app.state.estate
    app.access.require(who, Action.READ)
    return who
