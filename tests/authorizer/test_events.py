"""Unit tests of usage events: fields, timestamps, partition keys, size."""

from __future__ import annotations

import json
import uuid

import pytest

from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.events import MAX_RECEIVED_SKEW_SECONDS, build_event, encode_event, partition_key
from authorizer.request import parse_request
from contract.events import UsageEventV1, format_epoch
from tests.authorizer.conftest import rest_event

EVENT_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
CALLER = Caller(key_id="abcdefghijkl", email="Ada@Example.com", plan="free")


def test_event_has_every_contract_field() -> None:
    """An API call event carries exactly the version-1 fields."""
    event = build_event(
        Decision(Outcome.ALLOWED, CALLER),
        parse_request(rest_event()),
        "test",
        1_795_000_000.1234,
        new_id=lambda: EVENT_ID,
    )
    assert event == {
        "version": 1,
        "eventId": str(EVENT_ID),
        "eventType": "API_CALL",
        "timestamp": "2026-11-18T11:06:40.123Z",
        "environment": "test",
        "userEmail": "Ada@Example.com",
        "apiKeyId": "abcdefghijkl",
        "plan": "free",
        "httpMethod": "GET",
        "resourcePath": "/items/{id}",
        "path": "/items/42",
        "sourceIp": "203.0.113.9",
        "userAgent": "curl/8.5",
        "requestId": "req-1",
        "reason": None,
    }


@pytest.mark.parametrize(
    ("outcome", "event_type"),
    [(Outcome.AUTH_FAILED, "API_AUTH_FAILED"), (Outcome.RATE_LIMITED, "API_RATE_LIMITED")],
)
def test_denials_map_to_event_types(outcome: Outcome, event_type: str) -> None:
    """Key denials are API_AUTH_FAILED and rate-limit denials API_RATE_LIMITED, with the reason."""
    event = build_event(Decision(outcome, reason=Reason.UNKNOWN_KEY), parse_request(None), "test", 0.0)
    assert (event["eventType"], event["reason"], event["userEmail"]) == (event_type, "UNKNOWN_KEY", None)


def test_timestamp_is_utc_with_milliseconds() -> None:
    """Timestamps are RFC 3339, UTC, with exactly three fraction digits."""
    assert format_epoch(0.9999) == "1970-01-01T00:00:00.999Z"
    assert format_epoch(1_795_000_000) == "2026-11-18T11:06:40.000Z"


def _event(email: str | None, ip: str | None, event_id: str = "e-1") -> UsageEventV1:
    decision = (
        Decision(Outcome.ALLOWED, Caller("k", email, "free")) if email else Decision(Outcome.AUTH_FAILED)
    )
    event = build_event(decision, parse_request(rest_event()), "test", 0, new_id=lambda: EVENT_ID)
    return event | {"userEmail": email, "sourceIp": ip, "eventId": event_id}


def test_partition_key_follows_the_user_and_spreads_unknown_callers() -> None:
    """A user's events share a partition key whatever the email's case; those of unknown callers
    are keyed by their own id, so one address's flood spreads over every shard."""
    first = partition_key(_event("Ada@Example.com", "1.1.1.1"))
    assert first == partition_key(_event("ada@example.com", "2.2.2.2"))
    assert "ada" not in first and len(first) == 32
    assert partition_key(_event(None, "1.1.1.1", "e-1")) == "e-1"
    assert partition_key(_event(None, "1.1.1.1", "e-2")) == "e-2"


def test_worst_case_event_fits_the_consumer_limit() -> None:
    """Even with every field at its cap of escaped characters, a record stays under 16 KiB."""
    event = rest_event(path="\x01" * 10_000, resource="\x02" * 10_000, httpMethod="\x03" * 10_000)
    event["requestContext"] = {
        "requestId": "\x04" * 10_000,
        "identity": {"sourceIp": "\x05" * 10_000, "userAgent": "\x06" * 10_000},
    }
    data = encode_event(build_event(Decision(Outcome.ALLOWED, CALLER), parse_request(event), "e", 0.0))
    assert len(data) < 16 * 1024
    assert json.loads(data)["path"] == "\x01" * 300


def test_events_decode_with_the_consumer_contract() -> None:
    """Every event type decodes with the consumer's version-1 decoder."""
    events_module = pytest.importorskip("consumer.core.events")
    from datetime import UTC, datetime

    for outcome in Outcome:
        caller = CALLER if outcome is not Outcome.AUTH_FAILED else None
        event = build_event(
            Decision(outcome, caller, Reason.RATE_LIMIT_SECOND),
            parse_request(rest_event()),
            "test",
            1_795_000_000.0,
        )
        decoded = events_module.decode_event(encode_event(event), datetime.fromtimestamp(1_795_000_001, UTC))
        assert decoded.event_type == event["eventType"]


def test_an_event_is_stamped_when_api_gateway_received_its_request() -> None:
    """To the millisecond of its access-log line, so both records of a request fall in one hour;
    a receive time more than MAX_RECEIVED_SKEW_SECONDS from the Lambda's clock is not believed."""
    received = 1_795_000_799_999  # 11:19:59.999, a millisecond before the minute
    event = rest_event()
    event["requestContext"]["requestTimeEpoch"] = received
    request = parse_request(event)
    decision = Decision(Outcome.ALLOWED, CALLER)
    assert (
        build_event(decision, request, "t", received / 1000 + 0.004)["timestamp"]
        == "2026-11-18T11:19:59.999Z"
    )
    late = received / 1000 + MAX_RECEIVED_SKEW_SECONDS + 1
    assert build_event(decision, request, "t", late)["timestamp"] == format_epoch(late)
    assert build_event(decision, parse_request(rest_event()), "t", late)["timestamp"] == format_epoch(late)
