"""API token strings: `est_<id>_<secret>`. The id finds the record; only a SHA-256 of the secret is stored, and
the comparison runs in constant time. Secrets are 256 random bits, so a fast hash is enough (nothing to brute)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from estate.errors import Unauthenticated

PREFIX = "est_"
_FORMAT = re.compile(r"^est_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class TokenString:
    id: str
    secret: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.id}_{self.secret}"


def new_token() -> TokenString:
    return TokenString(secrets.token_hex(8), secrets.token_urlsafe(32))


def parse(text: str) -> TokenString:
    """The token in `text`; Unauthenticated (never echoing it) when it is not one of ours."""
    found = _FORMAT.match(text.strip())
    if found is None:
        raise Unauthenticated("malformed API token", hint="tokens look like est_<16 hex>_<secret>")
    return TokenString(found.group(1), found.group(2))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def looks_like_token(text: str) -> bool:
    """An API token rather than a JWT (which has two dots)."""
    return text.startswith(PREFIX)
