"""A generic JSON codec for the domain's frozen dataclasses, so specs and rollout state persist as data.

Unions of dataclasses carry their class name under `"__type__"`; enums store their value; datetimes and
times of day become ISO 8601 strings; tuples, frozensets, other sequences and mappings become lists and objects. A
sequence class is rebuilt from its items when it says how (`item_type` and `from_items`, as `EnvTable`
does). Fields marked `metadata={"derived": True}` are not stored (they are rebuilt on demand).

Encoders and decoders are compiled once per type (a rollout of 10,000 environments is one value). Pure (no
I/O): the store persists with it and the Temporal engine's data converter carries the same values.
"""

from __future__ import annotations

import dataclasses
import gc
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, time
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")
JSON = Any
Codec = Callable[[Any], Any]
_SCALARS = frozenset({str, int, float, bool, type(None)})


def encode(value: Any) -> JSON:
    """A JSON-ready value for a domain object."""
    cls: type = type(value)
    if cls in _SCALARS:  # the common case, first: rollout state is mostly strings
        return value
    return _encoder(cls)(value)


@cache
def _encoder(cls: type) -> Codec:
    if dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("derived"))
        type_name = cls.__name__

        def encode_dataclass(value: Any) -> JSON:
            out = {}
            for name in names:
                v = getattr(value, name)
                out[name] = v if type(v) in _SCALARS else encode(v)
            out["__type__"] = type_name
            return out

        return encode_dataclass
    if issubclass(cls, Enum):
        return lambda value: value.value
    if issubclass(cls, datetime | time):
        return lambda value: value.isoformat()
    if issubclass(cls, Mapping):
        return lambda value: {str(k): encode(v) for k, v in value.items()}
    if issubclass(cls, frozenset | set):
        return lambda value: sorted(encode(v) for v in value)
    if issubclass(cls, Sequence):
        return lambda value: [encode(v) for v in value]
    return lambda value: value


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large value is parsed and rebuilt: the tens of thousands
    of young objects would otherwise trigger collections that cost more than the work itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode(hint: Any, data: JSON) -> Any:
    """Rebuild a value of type `hint` from `encode`'s output."""
    return _decoder(hint)(data)


def decode_as(cls: type[T], data: JSON) -> T:
    result: T = _decoder(typing.cast(Any, cls))(data)
    return result


def _none_safe(inner: Codec) -> Codec:
    def decode_or_none(data: JSON) -> Any:
        return None if data is None else inner(data)

    return decode_or_none


@cache
def _decoder(hint: Any) -> Codec:
    built = _build(hint)
    return built if built is _identity else _none_safe(built)


def _identity(data: JSON) -> Any:
    return data


def _build(hint: Any) -> Codec:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return _union(args)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if isinstance(hint, type) and hasattr(hint, "from_items") and hasattr(hint, "item_type"):
        item = _decoder(hint.item_type)
        build = hint.from_items
        return lambda data: build(map(item, data))
    if hint is datetime:
        return datetime.fromisoformat
    if hint is time:
        return time.fromisoformat
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])
            return lambda data: tuple(map(item, data))
        items = [_decoder(a) for a in args]
        return lambda data: tuple(d(v) for d, v in zip(items, data, strict=False))
    if origin is frozenset:
        member = _decoder(args[0])
        return lambda data: frozenset(map(member, data))
    if origin is list:
        element = _decoder(args[0])
        return lambda data: list(map(element, data))
    if origin in (Mapping, dict):
        value = _decoder(args[1]) if args else _identity
        wrap = dict if origin is dict else types.MappingProxyType
        return lambda data: wrap({k: value(v) for k, v in data.items()})
    return _identity


def _dataclass(cls: type) -> Codec:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _decoder(hints[f.name])) for f in dataclasses.fields(cls) if not f.metadata.get("derived")]

    # Scalar fields (most of them) need no decoding: skip the call, it adds up over 10,000 environments.
    converted = [(name, None if dec is _identity else dec) for name, dec in fields]

    def decode_dataclass(data: JSON) -> Any:
        kwargs = {}
        for name, dec in converted:
            if name in data:
                value = data[name]
                kwargs[name] = value if dec is None else dec(value)
        return cls(**kwargs)

    return decode_dataclass


def _union(options: tuple[Any, ...]) -> Codec:
    by_name = {o.__name__: _decoder(o) for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)}
    non_none = [o for o in options if o is not type(None)]
    single = _decoder(non_none[0]) if len(non_none) == 1 else _identity
    if not by_name and single is _identity:
        return _identity

    def decode_union(data: JSON) -> Any:
        if isinstance(data, dict) and "__type__" in data and data["__type__"] in by_name:
            return by_name[data["__type__"]](data)
        return single(data)

    return decode_union
