"""Lists paginate: a page of items and the cursor of the next one (`?after=next_cursor`); None on the last."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from estate.errors import InputError

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many items")]
After = Annotated[str | None, Query(min_length=1, max_length=256, description="the `next_cursor` of the previous page")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def page(items: Sequence[T], key: Callable[[T], str], limit: int, after: str | None) -> Page[T]:
    """A page of a list held in memory, the cursor being the key of the last item given."""
    start = 0
    if after is not None:
        keys = [key(i) for i in items]
        if after not in keys:
            raise InputError(f"after: no item '{after}' in this list", hint="start again without `after`")
        start = keys.index(after) + 1
    chosen = list(items[start : start + limit])
    more = start + limit < len(items)
    return Page[T](items=chosen, next_cursor=key(chosen[-1]) if more and chosen else None)


def by_id(items: Sequence[T], key: Callable[[T], int], limit: int) -> Page[T]:
    """A page read from the store newest first, `limit + 1` asked for: the cursor is the last id given."""
    chosen = list(items[:limit])
    return Page[T](items=chosen, next_cursor=str(key(chosen[-1])) if len(items) > limit and chosen else None)


def before_id(after: str | None) -> int | None:
    """The id an id cursor names."""
    if after is None:
        return None
    if not after.isdigit():
        raise InputError(f"after: '{after}' is not a cursor of this list (a number)")
    return int(after)
