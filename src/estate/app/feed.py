"""The event feed: what happened to rollouts and deployments, in order, resumable by event id (the source of
the server's event stream and of `rollout status --watch`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from estate.app.views.events import EventView
from estate.store import Store
from estate.store import feed as entries

FOLLOW_POLL_SECONDS = 0.5


class Feed:
    """Reads the feed of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def after(
        self, last: int, *, rollout: str | None = None, kinds: Sequence[str] = (), limit: int = 500
    ) -> list[EventView]:
        """Events with an id above `last`, oldest first (at most `limit`)."""
        with self.store.connect() as conn:
            found = entries.read(conn, last, limit=limit, rollout_id=rollout, kinds=kinds)
        return [EventView.model_validate(e.__dict__) for e in found]

    def last_id(self) -> int:
        """The newest event's id: follow from here to see only what happens next."""
        with self.store.connect() as conn:
            return entries.last_id(conn)

    def follow(
        self,
        *,
        rollout: str | None = None,
        after: int | None = None,
        poll: float = FOLLOW_POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[list[EventView]]:
        """Batches of new events as they are stored (from `after`, default: from now on), forever."""
        last = self.last_id() if after is None else after
        while True:
            batch = self.after(last, rollout=rollout)
            if batch:
                last = batch[-1].id
                yield batch
            else:
                sleep(poll)
