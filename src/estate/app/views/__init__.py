"""Typed views the application layer returns: the one documented shape of `--output json` and the HTTP API."""

from pydantic import BaseModel, ConfigDict


class View(BaseModel):
    """Base of every view: immutable, and strict about its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


__all__ = ["View"]
