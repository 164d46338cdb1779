"""Who runs what: process identities (`host:pid`) and whether the process behind one is gone.

Deployments and rollout leases name the process that holds them. After a crash the next process must
tell a holder that died (its work is interrupted and redone) from one that lives on another machine
(its work is left alone): a holder on this host is dead when its pid is; a holder elsewhere is dead
when its heartbeat lease (`host:<holder>`, renewed by every engine host) has expired.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import Connection

from estate.store import leases
from estate.store.repository import Store


def process_identity() -> str:
    """This process, as holders are named: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_name(holder: str) -> str:
    return f"host:{holder}"


def heartbeat(store: Store, holder: str, now: datetime, ttl: timedelta) -> None:
    """`holder` lives: renew its heartbeat lease for `ttl`."""
    with store.begin() as conn:
        leases.acquire(conn, heartbeat_name(holder), holder, now, ttl)


def stop_heartbeat(store: Store, holder: str) -> None:
    """`holder` stops cleanly: nothing of its should wait for the heartbeat to expire."""
    with store.begin() as conn:
        leases.release(conn, heartbeat_name(holder), holder)


def is_gone(conn: Connection, holder: str | None, now: datetime) -> bool:
    """True when the process `holder` names no longer runs (or nobody holds the work at all)."""
    if not holder:
        return True
    host, _, pid = holder.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _pid_alive(int(pid))
    return leases.holder(conn, heartbeat_name(holder), now) is None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
