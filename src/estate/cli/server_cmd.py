"""`estate server`: serve the REST API, the event stream and metrics, and drive every rollout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM).")] = None,
    plain_http: Annotated[
        bool, typer.Option(help="Allow plain HTTP off loopback: a TLS-terminating proxy stands in front.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the API under /api/v1 (OpenAPI at /openapi.json), /healthz, /readyz and /metrics, and host the
    engine that drives every active rollout until stopped (Ctrl-C). Every request authenticates with a bearer
    token or an OIDC JWT (see docs/access.md; the first admin token: `estate token create --user root`).

    Clients: `estate login --url http://127.0.0.1:8080` and every `estate` command talks to this server.
    """
    # FastAPI builds its OpenAPI models at import (~0.4 s): only `estate server` pays for them
    from estate.api.server import serve  # noqa: PLC0415

    serve(os.environ, host, port, log_level=log_level, tls_cert=tls_cert, tls_key=tls_key, plain_http=plain_http)


def register(app: typer.Typer) -> None:
    app.command()(server)
