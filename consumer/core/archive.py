"""The raw-event archive's pages: a caller's usage events of one hour and one flush range, as sent.

A page is a JSON array of the events exactly as their records held them (each already decoded
once, so valid JSON), zlib-compressed. It stays under DynamoDB's 400 KB item limit: events that do
not fit are split, by halving, into parts. The split depends only on the events, so a replayed
flush range writes the very same pages.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

MAX_PAGE_BYTES = 350 * 1024  # compressed; the rest of the 400 KB is keys and attributes
_encoder = msgspec.json.Encoder()


def pack(events: list[bytes]) -> list[bytes]:
    """The events as compressed parts, each at most `MAX_PAGE_BYTES`, in order."""
    data = zlib.compress(_encoder.encode([msgspec.Raw(event) for event in events]), 6)
    if len(data) <= MAX_PAGE_BYTES or len(events) == 1:
        return [data]
    middle = len(events) // 2
    return pack(events[:middle]) + pack(events[middle:])


def unpack(data: bytes) -> list[dict[str, Any]]:
    """A page's events, as sent."""
    events: list[dict[str, Any]] = msgspec.json.decode(zlib.decompress(data))
    return events
