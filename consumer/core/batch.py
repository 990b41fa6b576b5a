"""Decoding a usage batch record (`contract.batch`): its events, each judged as a version-1 record.

Decoding is total, like `consumer.core.events`: any bytes give a `BatchRecord` or `InvalidEvent`
(tests/unit/test_batch_fuzz.py). A record that cannot be opened (not zlib, truncated, not a JSON
array of 1 to `MAX_BATCH_EVENTS` items) fails whole; inside a good one, a bad event fails alone, in
its place, so the others still count. Inflating is bounded by `MAX_BATCH_BYTES` (256 KiB): a
decompression bomb is refused after that many bytes, never expanded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import msgspec

from consumer.core.events import (
    InvalidEvent,
    Reason,
    UsageEvent,
    counted_times,
    decode_event,
    event_problem,
)
from contract.batch import BATCH_PREFIX, MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from contract.events import MAX_EVENT_BYTES

_TOO_DEEP: Final = "nested deeper than the decoder can read"

Member = tuple[int, UsageEvent, bytes]  # index in the batch, the event, its JSON as sent
Rejected = tuple[int, InvalidEvent, bytes]  # index in the batch, why it cannot count, its JSON as sent


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch's events that count and those that do not, each in batch order."""

    events: list[Member]
    rejected: list[Rejected]


_members_decoder = msgspec.json.Decoder(
    Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]
)
_events_decoder = msgspec.json.Decoder(list[UsageEvent])


def decode_batch(data: bytes, now: datetime) -> BatchRecord:
    """Decode one batch record, or raise `InvalidEvent` if it cannot be opened."""
    document = _inflate(data)
    members = _members(document)
    valid = _all_valid(document, members, now)
    if valid is not None:
        pairs = enumerate(zip(valid, members, strict=True))
        return BatchRecord([(index, event, bytes(raw)) for index, (event, raw) in pairs], [])
    events: list[Member] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(members):  # one by one, to tell which events cannot count and why
        member = bytes(raw)
        try:
            events.append((index, decode_event(member, now), member))
        except InvalidEvent as invalid:
            rejected.append((index, invalid, member))
    return BatchRecord(events, rejected)


def _all_valid(document: bytes, members: list[msgspec.Raw], now: datetime) -> list[UsageEvent] | None:
    """Every event of the batch in one call, as `decode_event` would decode each (the usual case,
    several times faster); None if any would not count, or if the decoder fails on anything."""
    if max(map(len, members)) > MAX_EVENT_BYTES:
        return None
    try:
        events = _events_decoder.decode(document)
    except Exception:  # whatever it is, judging each event on its own tells
        return None
    times = counted_times(now)
    if len(events) == len(members) and not any(event_problem(event, now, times) for event in events):
        return events
    return None


def _inflate(data: bytes) -> bytes:
    """The batch's JSON array, inflating at most one byte past the bound (a bomb is refused)."""
    if not data.startswith(BATCH_PREFIX):
        raise InvalidEvent(Reason.BATCH_INVALID, "not a usage batch (version 2)")
    inflater = zlib.decompressobj()
    try:
        document = inflater.decompress(memoryview(data)[len(BATCH_PREFIX) :], MAX_BATCH_BYTES + 1)
    except zlib.error:
        raise InvalidEvent(Reason.BATCH_INVALID, "not a valid zlib stream") from None
    if len(document) > MAX_BATCH_BYTES:
        raise InvalidEvent(Reason.DECOMPRESSION_LIMIT, f"inflates past {MAX_BATCH_BYTES} bytes")
    if not inflater.eof:
        raise InvalidEvent(Reason.BATCH_INVALID, "zlib stream is truncated")
    if inflater.unused_data:
        raise InvalidEvent(Reason.BATCH_INVALID, "data after the zlib stream")
    return document


def _members(document: bytes) -> list[msgspec.Raw]:
    try:
        return _members_decoder.decode(document)
    except (msgspec.DecodeError, UnicodeError):  # ValidationError is a DecodeError
        raise InvalidEvent(
            Reason.BATCH_INVALID, f"not a JSON array of 1 to {MAX_BATCH_EVENTS} events"
        ) from None
    except RecursionError:  # msgspec recurses even to skip a value it keeps raw
        raise InvalidEvent(Reason.TOO_DEEP, _TOO_DEEP) from None
