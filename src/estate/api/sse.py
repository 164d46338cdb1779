"""Server-Sent Events: a stream of stored events that a client resumes with `Last-Event-ID` (every event after
that id, each once), with a comment every few seconds so proxies and clients know the stream lives."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
from fastapi import Request
from pydantic import BaseModel

MEDIA_TYPE = "text/event-stream"
POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 10.0


def documented(data: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a streaming route whose events carry `data` (a schema in the document's components)."""
    description = f"text/event-stream; each event's `data` is a {data} (#/components/schemas/{data})"
    return {200: {"description": description, "content": {MEDIA_TYPE: {"schema": {"type": "string"}}}}}


def frame(event_id: int | None, kind: str, data: BaseModel | str) -> str:
    payload = data.model_dump_json() if isinstance(data, BaseModel) else data
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {payload}\n\n"


def last_event_id(request: Request, after: int | None) -> int:
    """Where a (re)connecting client resumes: `Last-Event-ID`, else `?after=`, else -1 (from the start)."""
    header = request.headers.get("last-event-id", "").strip()
    if header.lstrip("-").isdigit():
        return int(header)
    return after if after is not None else -1


async def stream(
    request: Request,
    read: Callable[[int], Sequence[Any]],
    last: int,
    render: Callable[[Any], str],
    position: Callable[[Any], int],
    *,
    stopping: threading.Event,
    done: Callable[[], bool] = lambda: False,
) -> AsyncIterator[str]:
    """Frames of whatever `read(last)` returns, polled until the client leaves, the server stops, or `done()`
    holds once everything has been sent."""
    yield f"retry: 1000\n: resuming after {last}\n\n"
    quiet_since = time.monotonic()
    while not stopping.is_set() and not await request.is_disconnected():
        # `done` first: every event stored before it held is then in the read that follows
        finished = await anyio.to_thread.run_sync(done)
        batch = await anyio.to_thread.run_sync(read, last)
        for item in batch:
            last = position(item)
            yield render(item)
        if finished and not batch:
            return
        if batch:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL_SECONDS)
