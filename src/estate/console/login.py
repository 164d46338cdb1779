"""Logging in and out of the console. The login form takes an API token (`estate token create`) or, when
`settings.oidc` names an issuer, a JWT it issued; the credential is checked like any bearer credential
(failures audited and throttled) and kept in the session cookie. Logging out forgets it in this browser."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from estate.api import session
from estate.api.caller import authenticate
from estate.app import App
from estate.app.audit import Attempt
from estate.console.render import ConsoleRoute, Render
from estate.errors import Forbidden, InputError, Throttled, Unauthenticated

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
MAX_FORM_BYTES = 64 * 1024


async def form(request: Request) -> dict[str, str]:
    """A small `application/x-www-form-urlencoded` body (the last value of each field)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise InputError("expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InputError("the form is too large")
    return {k: v[-1] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}


Form = Annotated[dict[str, str], Depends(form)]


def _local(target: str | None) -> str:
    """Where to go after logging in: a path of this site, never another site (`//host`, `https://...`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _same_origin(request: Request) -> None:
    """A form post must come from one of this site's pages (a browser always says where from in `Origin`)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(f"refusing a form posted from another site ({origin})")


def _login(
    request: Request, render: Render, *, status: int, back: str, error: str | None, expired: bool
) -> HTMLResponse:
    app: App = request.app.state.estate
    return render.page(
        request,
        None,
        "login.html",
        status=status,
        title="Log in",
        back=back,
        error=error,
        expired=expired,
        issuer=app.identity.oidc_issuer(),
    )


@router.get("/login")
def login_page(
    request: Request,
    render: Render,
    back: Annotated[str | None, Query(alias="next", max_length=2048)] = None,
    expired: bool = False,
) -> HTMLResponse:
    return _login(request, render, status=200, back=_local(back), error=None, expired=expired)


@router.post("/login")
def login(request: Request, render: Render, fields: Form) -> Response:
    _same_origin(request)
    credential = fields.get("token", "").strip()
    back = _local(fields.get("next"))

    def presented() -> tuple[None, str]:
        if not credential:
            raise Unauthenticated("enter an API token (or an OIDC token)")
        return None, credential

    try:
        who = authenticate(request, presented)
    except Unauthenticated as exc:
        status = 429 if isinstance(exc, Throttled) else 401
        return _login(request, render, status=status, back=back, error=exc.message, expired=False)
    app: App = request.app.state.estate
    app.audit.record(who, "console login", Attempt("console"))
    response = RedirectResponse(back, 303)
    session.open_session(response, credential)
    return response


@router.post("/logout")
def logout(request: Request, fields: Form) -> Response:
    _same_origin(request)
    credential = session.credential(request)
    if credential is not None and not session.csrf_ok(credential, fields.get("csrf")):
        raise Forbidden("refusing to log out without this session's CSRF token")
    response = RedirectResponse("/login", 303)
    session.close_session(response)
    return response
