"""A local OIDC issuer for tests (a pytest plugin): its own RSA keys, a JWKS endpoint on loopback, tokens signed
on demand.

Fixtures:
    issuer   an `Issuer` (stopped at teardown)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class Issuer:
    """A local OIDC issuer: its own RSA keys, a JWKS endpoint on loopback, and tokens signed on demand."""

    def __init__(self) -> None:
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2")}
        self.published = {"k1"}
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                keys = [
                    {
                        **RSAAlgorithm.to_jwk(issuer.keys[k].public_key(), as_dict=True),
                        "kid": k,
                        "use": "sig",
                        "alg": "RS256",
                    }
                    for k in sorted(issuer.published)
                ]
                body = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self, *, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": "estate", "exp": now + 300, "nbf": now - 5, "iat": now}
        body.update({"preferred_username": "olga", "groups": ["platform"]}, **claims)
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.server.shutdown()
    found.server.server_close()
