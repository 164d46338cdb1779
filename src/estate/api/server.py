"""Run `estate server`: the API on uvicorn, with the engine host inside.

Every request must present a bearer credential (an API token or an OIDC JWT). Those are secrets, so the
server speaks HTTPS itself (`tls_cert`/`tls_key`) or listens on a loopback address only, unless told that a
TLS-terminating proxy stands in front (`plain_http`): it refuses otherwise, and says why.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from estate.api.app import create_api
from estate.app import Wiring, bootstrap
from estate.errors import InputError

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5  # event streams never end by themselves


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(host: str, *, tls: bool, plain_http: bool) -> None:
    """InputError when bearer credentials would cross a network in clear text."""
    if tls or plain_http or is_loopback(host):
        return
    raise InputError(
        f"refusing to listen on {host} over plain HTTP: every request carries a bearer token, which anyone on "
        "the network path could read and reuse",
        hint="give --tls-cert and --tls-key, or --plain-http if a TLS-terminating proxy stands in front",
    )


def serve(
    environ: Mapping[str, str],
    host: str,
    port: int,
    *,
    log_level: str = "info",
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    plain_http: bool = False,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM): the engine host starts with the server and stops with it."""
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    check_transport(host, tls=tls_cert is not None, plain_http=plain_http)
    app = bootstrap(environ, Wiring(hosted=True))
    try:
        config = uvicorn.Config(
            create_api(app),
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            proxy_headers=False,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )
        uvicorn.Server(config).run()
    finally:
        app.close()
