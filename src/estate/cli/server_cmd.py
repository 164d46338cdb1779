"""`estate server`: serve the REST API, the event stream and metrics, and drive every rollout."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from estate.api.server import serve


def server(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback only until identity lands).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    log_level: Annotated[
        str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the API under /api/v1 (OpenAPI at /openapi.json), /healthz, /readyz and /metrics, and host the
    engine that drives every active rollout until stopped (Ctrl-C).

    Clients: set ESTATE_URL=http://127.0.0.1:8080 and every `estate` command talks to this server.
    """
    serve(os.environ, host, port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command()(server)
