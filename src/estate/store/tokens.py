"""API tokens in the store: created, listed, revoked, looked up. The secret itself is never stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from estate.errors import NotFoundError
from estate.store.repository import Store
from estate.store.tables import api_tokens


@dataclass(frozen=True)
class TokenRecord:
    """A stored token, without its secret."""

    id: str
    user: str
    groups: tuple[str, ...]
    secret_hash: str
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    last_used_at: datetime | None = None


class TokenStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, record: TokenRecord) -> None:
        with self.store.begin() as conn:
            conn.execute(insert(api_tokens).values(**{**record.__dict__, "groups": list(record.groups)}))

    def get(self, token_id: str) -> TokenRecord:
        with self.store.connect() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
        if row is None:
            raise NotFoundError(f"no token '{token_id}'", hint="see `estate token list`")
        return _record(row)

    def list(self) -> Sequence[TokenRecord]:
        with self.store.connect() as conn:
            return [_record(r) for r in conn.execute(select(api_tokens).order_by(api_tokens.c.created_at))]

    def revoke(self, token_id: str, by: str, now: datetime) -> TokenRecord:
        """Revoke (idempotent: a revoked token keeps its first revocation); NotFoundError for an unknown id."""
        with self.store.begin() as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=by)
            )
        return self.get(token_id)

    def used(self, token_id: str, now: datetime) -> None:
        with self.store.begin() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))


def _record(row: object) -> TokenRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return TokenRecord(**{**{k: m[k] for k in TokenRecord.__dataclass_fields__}, "groups": tuple(m["groups"])})
