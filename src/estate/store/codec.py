"""A generic JSON codec for the domain's frozen dataclasses, so specs and rollout state persist as data.

Unions of dataclasses carry their class name under `"__type__"`; enums store their value; tuples,
frozensets and mappings become lists and objects; datetimes become ISO 8601 strings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")
JSON = Any


_SCALARS = frozenset({str, int, float, bool, type(None)})


@cache
def _stored_fields(cls: type) -> tuple[str, ...] | None:
    """The fields `encode` writes for a dataclass type (derived ones are rebuilt, not stored); None otherwise."""
    if not dataclasses.is_dataclass(cls):
        return None
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("derived"))


def encode(value: Any) -> JSON:
    """A JSON-ready value for a domain object."""
    cls: type = type(value)
    if cls in _SCALARS:  # the common case, first: rollout state is mostly strings
        return value
    names = _stored_fields(cls)
    if names is not None:
        out = {name: encode(getattr(value, name)) for name in names}
        out["__type__"] = cls.__name__
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(encode(v) for v in value)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(hint: Any, data: JSON) -> Any:
    """Rebuild a value of type `hint` from `encode`'s output."""
    if data is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return _decode_union(get_args(hint), data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        kwargs = {f.name: decode(hints[f.name], data[f.name]) for f in dataclasses.fields(hint) if f.name in data}
        return hint(**kwargs)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(data)
    if hint is datetime:
        return datetime.fromisoformat(data)
    if origin is tuple:
        args = get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(decode(item if item is not None else args[i], v) for i, v in enumerate(data))
    if origin is frozenset:
        return frozenset(decode(get_args(hint)[0], v) for v in data)
    if origin in (Mapping, dict):
        value_hint = get_args(hint)[1] if get_args(hint) else Any
        decoded = {k: decode(value_hint, v) for k, v in data.items()}
        return types.MappingProxyType(decoded) if origin is not dict else decoded
    if origin is list:
        return [decode(get_args(hint)[0], v) for v in data]
    return data


def _decode_union(options: tuple[Any, ...], data: JSON) -> Any:
    if isinstance(data, dict) and "__type__" in data:
        for option in options:
            if isinstance(option, type) and option.__name__ == data["__type__"]:
                return decode(option, data)
    non_none = [o for o in options if o is not type(None)]
    if len(non_none) == 1:
        return decode(non_none[0], data)
    return data


def decode_as(cls: type[T], data: JSON) -> T:
    result: T = decode(cls, data)
    return result
