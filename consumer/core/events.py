"""The usage event contract, version 1, and its decoder.

Decoding is strict on the fields we count by and lenient on the rest: producers may add fields
(ignored), and descriptive fields may be missing. A record that cannot be counted raises
`InvalidEvent` with a machine-readable reason, so the caller can dead-letter it and go on.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

MAX_EVENT_BYTES = 16 * 1024
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Older than the stream's retention (7 days) plus the dead-letter queue's (14 days), so that a
# re-driven record is still counted; older still is a producer's broken clock.
MAX_EVENT_AGE = timedelta(days=30)


class EventType(StrEnum):
    API_CALL = "API_CALL"
    API_AUTH_FAILED = "API_AUTH_FAILED"
    API_RATE_LIMITED = "API_RATE_LIMITED"


class Reason(StrEnum):
    """Why a record could not be counted (the dead-letter reason)."""

    OVERSIZE = "OVERSIZE"
    NOT_JSON = "NOT_JSON"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    INVALID_FIELD = "INVALID_FIELD"
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    STALE_TIMESTAMP = "STALE_TIMESTAMP"


class InvalidEvent(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Text = Annotated[str, msgspec.Meta(max_length=2048)]
# The fields that become item keys stay within DynamoDB's 1,024 bytes for the `by-bucket` index's
# sort key, even in 4-byte UTF-8: an oversized key would fail every retry of its flush.
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
SourceIp = Annotated[str, msgspec.Meta(max_length=64)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]


class UsageEvent(msgspec.Struct, frozen=True, rename="camel"):
    version: Literal[1]
    event_id: uuid.UUID
    event_type: EventType
    timestamp: UtcTime
    user_email: Email | None = None
    api_key_id: Text | None = None
    source_ip: SourceIp | None = None
    environment: Text | None = None
    http_method: Text | None = None
    resource_path: Text | None = None
    path: Text | None = None
    user_agent: Text | None = None
    request_id: Text | None = None
    reason: Text | None = None


class _Envelope(msgspec.Struct):
    """Just enough to tell 'wrong version' and 'unknown type' apart from other field errors."""

    version: object = None
    eventType: object = None


_VALUE = re.compile(r"\bvalue\b.*", re.DOTALL)
_decoder = msgspec.json.Decoder(UsageEvent)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def decode_event(data: bytes, now: datetime) -> UsageEvent:
    """Decode one record's data into an event, or raise `InvalidEvent`."""
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent(Reason.OVERSIZE, f"{len(data)} bytes > {MAX_EVENT_BYTES}")
    try:
        event = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify(data, _without_values(str(exc))) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec reports bad UTF-8 inside a string as UnicodeDecodeError, not DecodeError.
        raise InvalidEvent(Reason.NOT_JSON, str(exc)) from None
    if event.timestamp - now > MAX_CLOCK_SKEW:
        raise InvalidEvent(Reason.FUTURE_TIMESTAMP, f"{event.timestamp.isoformat()} is ahead of {now}")
    if now - event.timestamp > MAX_EVENT_AGE:
        raise InvalidEvent(Reason.STALE_TIMESTAMP, f"{event.timestamp.isoformat()} is long before {now}")
    return event


def _without_values(message: str) -> str:
    """msgspec's message without the offending value, which may be anything (even a secret).

    msgspec words it `<what> - at `$.path``, naming the value only after "value" ("Invalid enum
    value 'x'"); types and limits, in the other messages, are ours and stay.
    """
    what, separator, path = message.rpartition(" - at ")  # the path comes last, after any value
    if not separator:
        what = message
    return _VALUE.sub("value", what) + separator + path


def _classify(data: bytes, detail: str) -> InvalidEvent:
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return InvalidEvent(Reason.INVALID_FIELD, detail)
    if envelope.version != 1:
        return InvalidEvent(Reason.UNSUPPORTED_VERSION, detail)
    if envelope.eventType not in EventType.__members__:
        return InvalidEvent(Reason.UNKNOWN_EVENT_TYPE, detail)
    return InvalidEvent(Reason.INVALID_FIELD, detail)


def utc_now() -> datetime:
    return datetime.now(UTC)
