"""Batched lookups by many keys that every database answers from an index."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, tuple_

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = 400) -> list[Sequence[T]]:
    """`items` in slices small enough for one statement (SQLite caps its bound parameters)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def pair_in(first: ColumnElement[Any], second: ColumnElement[Any], pairs: Collection[tuple[str, str]]) -> Any:
    """`(first, second) IN pairs`, written so SQLite searches an index on both columns: it scans the whole table
    for a row-value IN list alone (a rollout of 100,000 environments then reads 100,000 rows per batch)."""
    return and_(
        first.in_(sorted({a for a, _ in pairs})),
        second.in_(sorted({b for _, b in pairs})),
        tuple_(first, second).in_(sorted(pairs)),
    )
