"""The usage event, version 1: one JSON object per Kinesis record, UTF-8 (docs/events.md).

The authorizer builds `UsageEventV1` dicts; the consumer decodes them (`consumer.core.events`) and
checks its field names against this one (tests/unit/test_contract.py). Producers may add fields.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, NotRequired, TypedDict

VERSION = 1
MAX_EVENT_BYTES = 16 * 1024
# Fields that become item keys stay within DynamoDB's 1,024 bytes for the bucket index's sort
# key: an oversized key would fail every retry of its flush.
MAX_EMAIL_CHARS = 254  # RFC 5321's path limit
MAX_SOURCE_IP_CHARS = 64
MAX_TEXT_CHARS = 2048  # any other string field
# The authorizer cuts the request's descriptive fields (path, user agent) to this; the consumer
# matches an access-log line's path against the routes cut alike, so both records name one endpoint.
MAX_REQUEST_FIELD_CHARS = 300


class EventType(StrEnum):
    API_CALL = "API_CALL"
    API_AUTH_FAILED = "API_AUTH_FAILED"
    API_RATE_LIMITED = "API_RATE_LIMITED"


class UsageEventV1(TypedDict):
    version: Literal[1]
    eventId: str
    eventType: str
    timestamp: str
    environment: str
    userEmail: str | None
    apiKeyId: str | None
    plan: str | None
    httpMethod: str | None
    resourcePath: str | None
    path: str | None
    sourceIp: str | None
    userAgent: str | None
    requestId: str | None
    reason: str | None
    # Set by `metering dlq redrive`: the record this one puts back (`origin_id`). The consumer
    # counts one origin once, however many times it was put back.
    redriveOrigin: NotRequired[str]


def origin_id(
    shard_id: str, sequence_number: str, sub_sequence_number: int, log_event: int | None = None
) -> str:
    """A record's place in the stream (and a log event's in its record), as `redriveOrigin` names it."""
    place = f"{shard_id}/{sequence_number}/{sub_sequence_number}"
    return place if log_event is None else f"{place}/{log_event}"


# -- one user, one identity ----------------------------------------------------------------------

# ASCII only: an email is a billing identity, and Unicode lets two different strings look alike
# (a Cyrillic and a Latin 'a') or fold into one another (the Kelvin sign and 'k'). Internationalised
# domains are written in their ASCII form (xn--...). The local part is RFC 5322's dot-atom text.
EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z"
_EMAIL = re.compile(EMAIL_PATTERN)


def canonical_email(raw: str) -> str:
    """The one form of an email we store and count by: ASCII, lower-cased; `ValueError` otherwise."""
    email = raw.strip()
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
        raise ValueError(
            "not an email address we can count by: ASCII only (internationalised domains as xn--), "
            f"at most {MAX_EMAIL_CHARS} characters"
        )
    return email_key(email)


def email_key(valid_email: str) -> str:
    """The canonical form of an address that already matched `EMAIL_PATTERN` (the decoder's fast path)."""
    return valid_email.lower()


# -- time --------------------------------------------------------------------------------------------


def format_timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, `2026-11-24T17:52:13.123Z`: sorts as time, as stored."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_epoch(epoch_seconds: float) -> str:
    return format_timestamp(datetime.fromtimestamp(epoch_seconds, UTC))
