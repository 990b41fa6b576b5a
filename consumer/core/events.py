"""Decoding one record's bytes into a usage event v1 (`contract.events`), or a reason it cannot count.

Decoding is total: any bytes give an event or `InvalidEvent` with a machine-readable reason, so the
caller can dead-letter the record and go on (tests/unit/test_decoder_fuzz.py). It is strict on the
fields we count by and lenient on the rest: producers may add fields (ignored), and descriptive
fields may be missing.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal

import msgspec

from contract.events import (
    EMAIL_PATTERN,
    MAX_EMAIL_CHARS,
    MAX_EVENT_BYTES,
    MAX_SOURCE_IP_CHARS,
    MAX_TEXT_CHARS,
    EventType,
)

MAX_CLOCK_SKEW = timedelta(minutes=5)
# Older than the stream's retention (7 days) plus the dead-letter queue's (14 days), so that a
# re-driven record is still counted; older still is a producer's broken clock.
MAX_EVENT_AGE = timedelta(days=30)


class Reason(StrEnum):
    """Why a record could not be counted (the dead-letter reason)."""

    OVERSIZE = "OVERSIZE"
    NOT_JSON = "NOT_JSON"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    INVALID_FIELD = "INVALID_FIELD"
    TOO_DEEP = "TOO_DEEP"  # nested deeper than the decoder can read, in any field
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    STALE_TIMESTAMP = "STALE_TIMESTAMP"
    # API Gateway access logs, delivered by a CloudWatch Logs subscription (consumer.core.access_logs):
    ENVELOPE_INVALID = "ENVELOPE_INVALID"  # gzip, but not a CloudWatch Logs envelope we can read
    DECOMPRESSION_LIMIT = "DECOMPRESSION_LIMIT"  # inflates past the size or ratio bound: a bomb
    LOG_EVENT_INVALID = "LOG_EVENT_INVALID"  # one log event is not an access-log line of ours
    # A usage batch (contract.batch) we cannot open: not zlib, truncated, or not a JSON array of 1 to
    # MAX_BATCH_EVENTS items. A bad event inside a good batch fails alone, with a v1 reason above.
    BATCH_INVALID = "BATCH_INVALID"
    # The decoder itself failed on this record (a bug of ours): the record waits in the dead-letter
    # queue for the fix and a re-drive, and the shard goes on.
    DECODER_ERROR = "DECODER_ERROR"


class InvalidEvent(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
Email = Annotated[str, msgspec.Meta(max_length=MAX_EMAIL_CHARS, pattern=EMAIL_PATTERN)]
# Decoded without the pattern, which is checked once per address (`event_problem`): the regex was
# half of the decoding time, and a user's events repeat one address.
EmailText = Annotated[str, msgspec.Meta(max_length=MAX_EMAIL_CHARS)]
SourceIp = Annotated[str, msgspec.Meta(max_length=MAX_SOURCE_IP_CHARS)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]


# gc=False: no field can hold a container, so no cycle; the collector need not track events.
class UsageEvent(msgspec.Struct, frozen=True, rename="camel", gc=False):
    version: Literal[1]
    event_id: uuid.UUID
    event_type: EventType
    timestamp: UtcTime
    user_email: EmailText | None = None
    api_key_id: Text | None = None
    plan: Text | None = None
    source_ip: SourceIp | None = None
    environment: Text | None = None
    http_method: Text | None = None
    resource_path: Text | None = None
    path: Text | None = None
    user_agent: Text | None = None
    request_id: Text | None = None
    reason: Text | None = None
    redrive_origin: Text | None = None


class _EmailOnly(msgspec.Struct, frozen=True, rename="camel"):
    user_email: Email


class _Envelope(msgspec.Struct):
    """Just enough to tell 'wrong version' and 'unknown type' apart from other field errors."""

    version: object = None
    eventType: object = None


_VALUE = re.compile(r"\bvalue\b.*", re.DOTALL)
_decoder = msgspec.json.Decoder(UsageEvent)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def decode_event(data: bytes, now: datetime) -> UsageEvent:
    """Decode one record's data (or one event of a batch) into an event, or raise `InvalidEvent`."""
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent(Reason.OVERSIZE, f"{len(data)} bytes > {MAX_EVENT_BYTES}")
    try:
        event = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify(data, without_values(str(exc))) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec reports bad UTF-8 inside a string as UnicodeDecodeError, not DecodeError.
        raise InvalidEvent(Reason.NOT_JSON, without_values(str(exc))) from None
    except RecursionError:
        # msgspec recurses even to skip an unknown field: a 2 KiB `[[[[...` would stop the shard.
        raise InvalidEvent(Reason.TOO_DEEP, "nested deeper than the decoder can read") from None
    problem = event_problem(event, now, counted_times(now))
    if problem is not None:
        raise problem
    return event


def counted_times(now: datetime) -> tuple[datetime, datetime]:
    """The earliest and the latest timestamp an event arriving at `now` may have to be counted."""
    return now - MAX_EVENT_AGE, now + MAX_CLOCK_SKEW


def event_problem(event: UsageEvent, now: datetime, times: tuple[datetime, datetime]) -> InvalidEvent | None:
    """Why a decoded event still cannot count (its email, its time: `counted_times(now)`), or None."""
    if event.user_email is not None and (problem := _email_problem(event.user_email)) is not None:
        return InvalidEvent(Reason.INVALID_FIELD, problem)
    earliest, latest = times
    if event.timestamp > latest:
        return InvalidEvent(Reason.FUTURE_TIMESTAMP, f"{_iso(event.timestamp)} is ahead of {now}")
    if event.timestamp < earliest:
        return InvalidEvent(Reason.STALE_TIMESTAMP, f"{_iso(event.timestamp)} is long before {now}")
    return None


@lru_cache(maxsize=8192)
def _email_problem(email: str) -> str | None:
    """msgspec's own words if the address does not match `EMAIL_PATTERN` (the one rule), else None."""
    try:
        msgspec.convert({"userEmail": email}, _EmailOnly)
    except msgspec.ValidationError as exc:
        return without_values(str(exc))
    return None


def _iso(at: datetime) -> str:
    """A timestamp as sent: some cannot be shown in UTC (year 1 at +14:00, year 9999 at -14:00)."""
    return at.isoformat(timespec="milliseconds")


def without_values(message: str) -> str:
    """msgspec's message without the offending value, which may be anything (even a secret).

    msgspec words it `<what> - at `$.path``, naming the value only after "value" ("Invalid enum
    value 'x'"); types and limits, in the other messages, are ours and stay.
    """
    what, separator, path = message.rpartition(" - at ")  # the path comes last, after any value
    if not separator:
        what, path = message, ""
    return _VALUE.sub("value", what) + separator + path


def _classify(data: bytes, detail: str) -> InvalidEvent:
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return InvalidEvent(Reason.INVALID_FIELD, detail)
    except RecursionError:
        return InvalidEvent(Reason.TOO_DEEP, "nested deeper than the decoder can read")
    if envelope.version != 1:
        return InvalidEvent(Reason.UNSUPPORTED_VERSION, detail)
    if isinstance(envelope.eventType, str) and envelope.eventType not in EventType.__members__:
        return InvalidEvent(Reason.UNKNOWN_EVENT_TYPE, detail)
    return InvalidEvent(Reason.INVALID_FIELD, detail)  # missing or not a string: a field error


def utc_now() -> datetime:
    return datetime.now(UTC)
