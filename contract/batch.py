"""The usage batch, version 2: many usage events v1 in one Kinesis record (docs/events.md).

A record's data is one byte, `BATCH_PREFIX` (0x02, the version), then a zlib stream (RFC 1950,
deflate, no preset dictionary) of a UTF-8 JSON array of 1 to `MAX_BATCH_EVENTS` usage events v1,
each exactly as a version-1 record would hold it; the array holds at most `MAX_BATCH_BYTES`.
No other record starts with 0x02: a version-1 record is a JSON object (`{`), and an access-log
record of the CloudWatch Logs subscription is gzip (0x1f 0x8b).

Why: Kinesis takes 1,000 records/s and 1 MiB/s per shard. One record per event (~420 bytes) caps a
shard near 1,000 events/s; a batch of 25 events compresses to ~100 bytes an event (the event ids are
most of it), so two shards carry 10,000 events/s within both quotas (bench/producer_formats.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

BATCH_VERSION: Final = 2
BATCH_PREFIX: Final = bytes([BATCH_VERSION])
MAX_BATCH_EVENTS: Final = 500
# The JSON array, inflated. Small enough that inflating one record costs nothing worth a bound of
# its own, and that the compressed record stays far below Kinesis' 1 MiB whatever its events are.
MAX_BATCH_BYTES: Final = 256 * 1024
COMPRESSION_LEVEL: Final = 6  # zlib's default: level 9 saves ~3 % more for twice the CPU


def is_batch(data: bytes) -> bool:
    """Whether a record's data is a usage batch (of any version from 2 on)."""
    return data[:1] == BATCH_PREFIX


def document_bytes(event_bytes: int, events: int) -> int:
    """The size of the JSON array of `events` events of `event_bytes` bytes in all: `[a,b,c]`."""
    return event_bytes + events + 1


def encode_batch(events: Sequence[bytes]) -> bytes:
    """A batch record's data from events encoded as version-1 records (JSON objects, UTF-8)."""
    document = b"[" + b",".join(events) + b"]"
    if not 1 <= len(events) <= MAX_BATCH_EVENTS or len(document) > MAX_BATCH_BYTES:
        raise ValueError(
            f"a batch holds 1 to {MAX_BATCH_EVENTS} events in at most {MAX_BATCH_BYTES} bytes: "
            f"{len(events)} events, {len(document)} bytes"
        )
    return BATCH_PREFIX + zlib.compress(document, COMPRESSION_LEVEL)
