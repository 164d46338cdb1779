"""The data converter every Estate client, worker and replayer uses: the domain's own JSON codec (tagged
unions, enums, datetimes, read-only mappings) instead of Temporal's default, and zlib compression.

Temporal's default JSON converter decodes an untagged union by trying each arm (a `Pause` command comes back
as a `Start`) and cannot encode a `MappingProxyType`; `estate.domain.codec` tags every dataclass with its
type and rebuilds read-only mappings. Compression keeps a large rollout's state (about 340 bytes per
environment as JSON, highly repetitive) under Temporal's 2 MiB payload limit: 10,000 environments are
3.4 MiB of JSON and under 100 KiB compressed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    PayloadCodec,
)

from estate.domain import codec

ZLIB = b"binary/zlib"
_MIN_COMPRESSED = 256  # smaller payloads are sent as they are


class _Encoder(AdvancedJSONEncoder):
    def default(self, o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return codec.encode(o)
        if isinstance(o, Mapping):
            return dict(o)
        return super().default(o)


class _DomainTypes(JSONTypeConverter):
    def to_typed_value(self, hint: type, value: Any) -> Any:
        # Unions too: left to Temporal, a union hint is split and each arm tried, losing the "__type__" tag.
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if union or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return codec.decode(hint, value)
        return JSONTypeConverter.Unhandled


class EstatePayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with JSON done by the domain codec."""

    def __init__(self) -> None:
        super().__init__(
            *(
                JSONPlainPayloadConverter(encoder=_Encoder, custom_type_converters=[_DomainTypes()])
                if isinstance(c, JSONPlainPayloadConverter)
                else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


class ZlibCodec(PayloadCodec):
    """Compresses payloads of `_MIN_COMPRESSED` bytes or more (the whole serialized payload, metadata included)."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if len(p.data) < _MIN_COMPRESSED:
                out.append(p)
            else:
                out.append(Payload(metadata={"encoding": ZLIB}, data=zlib.compress(p.SerializeToString(), 6)))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") == ZLIB:
                inner = Payload()
                inner.ParseFromString(zlib.decompress(p.data))
                out.append(inner)
            else:
                out.append(p)
        return out


def data_converter() -> DataConverter:
    return dataclasses.replace(
        DataConverter.default, payload_converter_class=EstatePayloadConverter, payload_codec=ZlibCodec()
    )
