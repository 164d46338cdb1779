"""Who a request acts for. Until identity lands, the subject is what the `Estate-Actor` header says (like the
embedded CLI's `--as`, nothing proves it), recorded with auth `none`: that is why the server binds only to
a loopback address. The request id comes from `X-Request-ID` or is made up, and is echoed back."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Header, Request

from estate.app import Caller

ANONYMOUS = "anonymous"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(request: Request) -> str:
    """The request's id: the client's `X-Request-ID` if it is sane, else a new one (kept for the response)."""
    found = getattr(request.state, "request_id", None)
    if found is None:
        given = request.headers.get("x-request-id", "")
        found = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = found
    return str(found)


def caller(
    request: Request,
    estate_actor: Annotated[
        str | None,
        Header(
            alias="Estate-Actor",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9@._:+-]{0,254}$",
            description="who performs this (unauthenticated until identity lands)",
        ),
    ] = None,
) -> Caller:
    host = request.client.host if request.client else "unknown"
    return Caller(estate_actor or ANONYMOUS, auth="none", source=f"http:{host}", request_id=request_id(request))
