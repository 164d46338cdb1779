"""Request bodies over a size limit are refused (413) before they are read whole, by `Content-Length` or,
for a chunked body, as soon as the bytes received pass the limit."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from estate.api import problems

MAX_BODY_BYTES = 8 * 1024 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problems.response(self._problem())(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # handled by the app's HTTPException handler
                    raise HTTPException(413, self._problem().detail)
            return message

        await self.app(scope, limited, send)

    def _problem(self) -> problems.ProblemView:
        return problems.ProblemView(
            title="Content Too Large", status=413, detail=f"the request body exceeds {self.max_bytes} bytes"
        )
