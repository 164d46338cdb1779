"""Lines of a rollout's log written from outside an engine's turn: a command Temporal refused in its
Update validator never reaches the workflow, so the client records the refusal itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from estate.store.repository import Store
from estate.store.rollouts import LogEntry
from estate.store.rollouts import _append as append_entries


def append_log(store: Store, rollout_id: str, entries: Sequence[LogEntry], now: datetime) -> None:
    with store.begin() as conn:
        append_entries(conn, rollout_id, entries, now)
