"""`GET /api/v1/events`: rollout, wave, gate, environment, command and deployment transitions as Server-Sent
Events, read from the store's event feed; a client that reconnects with `Last-Event-ID` gets every event
after it, each once (whichever server it reconnects to)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from estate.api import sse
from estate.api.deps import Estate
from estate.api.problems import ERRORS
from estate.api.requests import ROLLOUT_PATTERN
from estate.app.views.events import EventView
from estate.errors import InputError

router = APIRouter(tags=["events"], responses=ERRORS)

KINDS = "rollout|target|wave|gate|env|command|deployment"


@router.get("/events", response_class=StreamingResponse, responses=sse.documented("EventView"))
def events(
    request: Request,
    estate: Estate,
    rollout: Annotated[str | None, Query(pattern=ROLLOUT_PATTERN, description="only this rollout's events")] = None,
    kind: Annotated[list[str] | None, Query(description=f"only these kinds ({KINDS.replace('|', ', ')})")] = None,
    after: Annotated[
        int | None, Query(ge=-1, le=2**53, description="start after this event id (default: only new events)")
    ] = None,
) -> StreamingResponse:
    """SSE: `id` is the event's id, `event` its kind, `data` an EventView. Without `Last-Event-ID` or `after`
    the stream starts with what happens next."""
    kinds = tuple(kind or ())
    for k in kinds:
        if k not in KINDS.split("|"):
            raise InputError(f"kind: unknown event kind '{k}' (known: {KINDS.replace('|', ', ')})")
    start = sse.last_event_id(request, after if after is not None else estate.feed.last_id())

    def read(last: int) -> list[EventView]:
        return estate.feed.after(last, rollout=rollout, kinds=kinds)

    frames = sse.stream(
        request,
        read,
        start,
        lambda e: sse.frame(e.id, e.kind, e),
        lambda e: e.id,
        stopping=request.app.state.stopping,
    )
    return StreamingResponse(frames, media_type=sse.MEDIA_TYPE, headers={"Cache-Control": "no-cache"})
