"""Decoding and validating the version-1 usage event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from consumer.core.events import InvalidEvent, Reason, decode_event
from consumer.testing import event
from contract.events import MAX_EVENT_BYTES, EventType

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def test_decodes_a_valid_event() -> None:
    """A contract event decodes with its type, user and UTC timestamp."""
    decoded = decode_event(orjson.dumps(event()), NOW)
    assert decoded.event_type is EventType.API_CALL
    assert decoded.user_email == "alice@example.com"
    assert decoded.timestamp == datetime(2026, 11, 24, 17, 52, 13, 123000, tzinfo=UTC)


def test_ignores_unknown_fields_and_accepts_null_user() -> None:
    """Producers may add fields; unknown callers have a null email."""
    decoded = decode_event(orjson.dumps(event(email=None, newField={"x": 1})), NOW)
    assert decoded.user_email is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", Reason.NOT_JSON),
        (b"\xff\xfe", Reason.NOT_JSON),
        (b'{"version":1,"path":"\xff"}', Reason.NOT_JSON),
        (orjson.dumps([1, 2]), Reason.INVALID_FIELD),
        (orjson.dumps(event(version=2)), Reason.UNSUPPORTED_VERSION),
        (orjson.dumps(event(eventType="API_DELETED")), Reason.UNKNOWN_EVENT_TYPE),
        (orjson.dumps(event(eventId="nope")), Reason.INVALID_FIELD),
        (orjson.dumps(event(timestamp="yesterday")), Reason.INVALID_FIELD),
        (orjson.dumps(event(timestamp="2026-11-24T17:52:13")), Reason.INVALID_FIELD),
        (orjson.dumps(event(userEmail=42)), Reason.INVALID_FIELD),
        (orjson.dumps(event(at=NOW + timedelta(hours=1))), Reason.FUTURE_TIMESTAMP),
        (orjson.dumps(event(at=NOW - timedelta(days=31))), Reason.STALE_TIMESTAMP),
        (orjson.dumps(event(timestamp="0001-01-01T00:00:00.000+14:00")), Reason.STALE_TIMESTAMP),
        (orjson.dumps(event(ip="2001:db8::1" * 10)), Reason.INVALID_FIELD),
        (orjson.dumps(event(email="ü@" + "ü" * 300)), Reason.INVALID_FIELD),
        (b" " * (MAX_EVENT_BYTES + 1), Reason.OVERSIZE),
    ],
)
def test_rejects_what_cannot_be_counted(data: bytes, reason: Reason) -> None:
    """Every kind of bad record raises InvalidEvent with a machine-readable reason."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(data, NOW)
    assert caught.value.reason is reason


def test_missing_timestamp_is_invalid() -> None:
    """The timestamp decides the bucket, so it is required."""
    payload = event()
    del payload["timestamp"]
    with pytest.raises(InvalidEvent) as caught:
        decode_event(orjson.dumps(payload), NOW)
    assert caught.value.reason is Reason.INVALID_FIELD


@pytest.mark.parametrize("value", ["ck_live_secret", "it's a secret", "x' - at `$.y` 'secret", 7])
def test_a_dead_letter_reason_never_quotes_the_bad_value(value: object) -> None:
    """The offending value may be anything, a secret included: details name the field only."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(orjson.dumps(event(eventType=value)), NOW)
    assert "secret" not in caught.value.detail and caught.value.detail.endswith("at `$.eventType`")


def test_a_re_driven_event_weeks_old_is_still_counted() -> None:
    """Within the stream's and the dead-letter queue's retention an old event is counted."""
    assert decode_event(orjson.dumps(event(at=NOW - timedelta(days=21))), NOW).timestamp < NOW
