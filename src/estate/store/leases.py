"""Leases: named, expiring claims in the store (one engine drives a rollout; a host proves it lives).

Functions take the caller's connection, so a lease can be taken in the same transaction as the work
it guards; `Store` wraps them in their own short transactions for everyone else.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from estate.store.rollout_tables import leases


def acquire(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name`; False while another holder's lease is unexpired."""
    expires = now + ttl
    renewed = conn.execute(
        update(leases)
        .where(leases.c.name == name, (leases.c.holder == holder) | (leases.c.expires_at < now))
        .values(holder=holder, expires_at=expires)
    )
    if renewed.rowcount == 1:
        return True
    try:
        with conn.begin_nested():
            conn.execute(insert(leases).values(name=name, holder=holder, expires_at=expires))
    except IntegrityError:
        return False
    return True


def release(conn: Connection, name: str, holder: str) -> None:
    conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


def holder(conn: Connection, name: str, now: datetime) -> str | None:
    """Who holds the lease `name` now; None when nobody does (or it expired)."""
    row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
    if row is None:
        return None
    return str(row.holder) if row.expires_at >= now else None
