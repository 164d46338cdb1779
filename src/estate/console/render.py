"""Pages: Jinja2 templates (autoescaped) rendered with what every page shows (who is logged in, the CSRF token,
the navigation), sent with headers that keep scripts of other origins, framing and caching out; an error is a
page too, with the status and words of the API's problem document."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from estate.api import problems, session
from estate.app import App, Caller
from estate.app.views.rollouts import SubjectEvidence
from estate.console import charts
from estate.errors import EstateError

#: No inline script or style, nothing from another origin, no framing, no referrer to other sites (a link to
#: Grafana does not tell it the rollout's URL; same-origin requests keep `Origin`, which form posts are checked by).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PARTIAL_HEADER = "X-Estate-Partial"  # the page's live region only (what the page's script asks for on each event)


class LoginRequired(Exception):
    """The request has no valid session: send the browser to the login page, then back."""

    def __init__(self, back: str, *, expired: bool = False) -> None:
        self.back = back
        self.expired = expired


def when(value: datetime | None) -> str:
    """A time as people read it here: UTC, to the second."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


EVIDENCE_SHOWN = 24  # subjects of one gate shown with a chart; a wave of thousands lists the rest by count


def evidence(subjects: Sequence[SubjectEvidence]) -> tuple[list[SubjectEvidence], int]:
    """The subjects of a gate worth a chart (those that did not pass first) and how many more there are."""
    ordered = sorted(subjects, key=lambda s: s.verdict == "passed")  # stable: membership order within each
    return ordered[:EVIDENCE_SHOWN], max(len(ordered) - EVIDENCE_SHOWN, 0)


def page_url(params: Mapping[str, str | None], after: str | None) -> str:
    """The query string of a list's page: its filters, and where the page starts."""
    kept = {k: v for k, v in params.items() if v and k != "after"}
    return "?" + urlencode({**kept, **({"after": after} if after else {})})


class Templates:
    """The console's templates, built once per server."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("estate.console", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=when, iso=iso)
        self.env.globals.update(sample_chart=charts.sample_chart, page_url=page_url, evidence=evidence)

    def page(
        self, request: Request, who: Caller | None, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """`template` with the page frame's context; `X-Estate-Partial: live` renders only the live region."""
        app: App = request.app.state.estate
        partial = request.headers.get(PARTIAL_HEADER) == "live" and "live" in context
        credential = session.credential(request)
        frame = {
            "me": app.identity.whoami(who) if who is not None else None,
            "csrf": session.csrf_token(credential) if credential and who is not None else "",
            "path": request.url.path,
            "query": dict(request.query_params),
            "lifecycles": app.inventory.flagged_versions(),  # every page marks them where it shows them
            **context,
        }
        name = context["live"] if partial else template
        html = self.env.get_template(name).render(frame)
        return HTMLResponse(html, status_code=status, headers=HEADERS)


class ConsoleRoute(APIRoute):
    """A console route: a missing session goes to the login page, an error becomes a page (the API's status and
    words, from the one map in `estate.api.problems`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                response = RedirectResponse(
                    f"/login?next={quote(exc.back, safe='/')}" + ("&expired=1" if exc.expired else ""), 303
                )
                if exc.expired:
                    session.close_session(response)
                return response
            except EstateError as exc:
                return _error(request, problems.from_error(exc))
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                return _error(request, problems.ProblemView(title="Invalid request", status=422, detail=detail))

        return route


def _templates(request: Request) -> Templates:
    templates: Templates = request.app.state.console
    return templates


Render = Annotated[Templates, Depends(_templates)]


def _error(request: Request, problem: problems.ProblemView) -> HTMLResponse:
    return _templates(request).page(
        request, None, "error.html", status=problem.status, problem=problem, title=problem.title
    )
