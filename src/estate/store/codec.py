"""The store's JSON codec; it lives in `estate.domain.codec` (pure, so a Temporal workflow can use it too)."""

from estate.domain.codec import decode, decode_as, encode, gc_paused

__all__ = ["decode", "decode_as", "encode", "gc_paused"]
