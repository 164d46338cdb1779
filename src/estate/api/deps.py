"""What routes take from the running server: the hosted application."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from estate.api.caller import caller, reader
from estate.app import App, Caller


def _estate(request: Request) -> App:
    app: App = request.app.state.estate
    return app


Estate = Annotated[App, Depends(_estate)]
Who = Annotated[Caller, Depends(caller)]
Reader = Annotated[Caller, Depends(reader)]
