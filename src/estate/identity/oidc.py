"""OIDC bearer tokens (JWTs) from an identity provider: signature, `exp`, `nbf`, `iss` and `aud` checked with
PyJWT against the provider's JWKS, which is cached and fetched again when a token names an unknown key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from estate.errors import ComponentError, Unauthenticated

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")  # never "none", never HMAC with a public key


@dataclass(frozen=True)
class OidcSettings:
    """`settings.oidc` of estate-as-code."""

    issuer: str
    audience: str
    jwks_url: str
    subject_claim: str = "preferred_username"
    groups_claim: str = "groups"
    leeway_seconds: int = 30

    @classmethod
    def from_settings(cls, oidc: Mapping[str, Any]) -> OidcSettings | None:
        if not oidc:
            return None
        return cls(**{k: v for k, v in oidc.items() if v is not None})


@dataclass(frozen=True)
class Identity:
    subject: str
    groups: frozenset[str]


class OidcVerifier:
    """Verifies JWTs of one issuer; one instance per process keeps the JWKS cache warm."""

    def __init__(self, settings: OidcSettings, *, jwks_cache_seconds: int = 300, refetch_cooldown: float = 10) -> None:
        self.settings = settings
        self._keys = jwt.PyJWKClient(
            settings.jwks_url, lifespan=jwks_cache_seconds, timeout=5, cooldown_duration=refetch_cooldown
        )

    def verify(self, token: str) -> Identity:
        s = self.settings
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise ComponentError("oidc", f"cannot fetch the signing keys from {s.jwks_url}", transient=True) from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid OIDC token: {exc}") from None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid OIDC token: {exc}") from None
        subject = claims.get(s.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(f"the OIDC token has no '{s.subject_claim}' claim naming the subject")
        groups = claims.get(s.groups_claim) or []
        return Identity(subject, frozenset(str(g) for g in groups if isinstance(g, str)))
