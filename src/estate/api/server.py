"""Run `estate server`: the API on uvicorn, with the engine host inside, on a loopback address.

Until identity lands nothing authenticates a request (the `Estate-Actor` header is taken at its word), so
binding anything but a loopback address would let anyone who can reach the port start, approve or abort
rollouts as anyone: the server refuses to, and says why.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

import uvicorn

from estate.api.app import create_api
from estate.app import Wiring, bootstrap
from estate.errors import InputError

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5  # event streams never end by themselves


def require_loopback(host: str) -> None:
    """InputError unless `host` is a loopback address (or `localhost`)."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InputError(
            f"refusing to listen on {host}: Estate has no authentication yet, so anyone who can reach the port "
            "could start, approve or abort rollouts in anyone's name",
            hint="listen on 127.0.0.1 or ::1 (the default); share it through an authenticating reverse proxy "
            "on the same machine if you must",
        )


def serve(environ: Mapping[str, str], host: str, port: int, *, log_level: str = "info") -> None:
    """Serve until interrupted (SIGINT/SIGTERM): the engine host starts with the server and stops with it."""
    require_loopback(host)
    app = bootstrap(environ, Wiring(hosted=True))
    try:
        config = uvicorn.Config(
            create_api(app),
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            proxy_headers=False,
        )
        uvicorn.Server(config).run()
    finally:
        app.close()
