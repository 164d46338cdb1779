"""The web console (`estate server` at `/`): server-rendered pages on the application layer, live over the event
stream, acting through `/api/v1` like the CLI. `install` adds it to the API."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request, Response

from estate.console import login, pages
from estate.console.render import HEADERS, ConsoleRoute, Templates
from estate.errors import NotFoundError

#: file -> media type; only the stylesheet and the icon are served without a session (the login page shows them)
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PUBLIC = frozenset({"console.css", "favicon.svg"})


def install(api: FastAPI) -> None:
    """Serve the console's pages, login and static files on `api`."""
    api.state.console = Templates()
    assets = {name: files("estate.console").joinpath("static", name).read_bytes() for name in STATIC}
    static = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

    @static.get("/static/{name}")
    def asset(name: str, request: Request) -> Response:
        if name not in STATIC:
            raise NotFoundError(f"no static file '{name}'")
        if name not in PUBLIC:
            pages.viewer(request)
        headers = {k: v for k, v in HEADERS.items() if k != "Cache-Control"} | {"Cache-Control": "no-cache"}
        return Response(assets[name], media_type=STATIC[name], headers=headers)

    for router in (login.router, pages.router, static):
        api.include_router(router)
