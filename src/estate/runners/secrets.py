"""Sensitive outputs at rest: Fernet-encrypted with ESTATE_SECRET_KEY, or not stored at all."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from estate.errors import InputError, OperationFailed

_KEY_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        # Never echo the key itself.
        raise InputError(
            "ESTATE_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes)", hint=_KEY_HINT
        ) from exc


def check_key(key: str | None) -> None:
    """Fail early, before any deployment runs, on a malformed key."""
    if key:
        _fernet(key)


def seal(values: Mapping[str, Any], key: str | None) -> str | None:
    """A token holding `values`, or None when there is nothing to keep or no key to keep it with."""
    if not values or not key:
        return None
    return _fernet(key).encrypt(json.dumps(dict(values), sort_keys=True).encode()).decode()


def unseal(token: str, key: str | None) -> dict[str, Any]:
    if not key:
        raise InputError("ESTATE_SECRET_KEY is not set; sensitive outputs cannot be decrypted")
    try:
        data: dict[str, Any] = json.loads(_fernet(key).decrypt(token.encode()))
    except InvalidToken as exc:
        raise OperationFailed("sensitive outputs were encrypted with another ESTATE_SECRET_KEY") from exc
    return data
