"""Decoding is total: any bytes give an event or `InvalidEvent`, and any event aggregates.

A record that makes the decoder raise anything else would stop its shard for good (every restart
replays it), so this is fuzzed with every JSON type in every field, recursive and deeply nested
values, huge numbers, odd timestamps and arbitrary bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.core.aggregate import Aggregate
from consumer.core.events import InvalidEvent, Reason, decode_event
from consumer.testing import event
from contract.events import MAX_EVENT_BYTES, UsageEventV1

NOW = datetime(2026, 11, 24, 18, tzinfo=UTC)
FIELDS = sorted(UsageEventV1.__annotations__)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda at: at.isoformat()),
    st.builds(
        lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
        st.datetimes(),
        st.integers(-1439, 1439),
    ),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999-14:00", "2026-11-24T17:52:13Z"]),
    st.datetimes(min_value=datetime(2026, 10, 1), max_value=datetime(2026, 12, 1)).map(
        lambda at: at.isoformat() + "Z"
    ),
)


def _total(data: bytes) -> None:
    """Any bytes: an event that aggregates, or InvalidEvent; nothing else escapes."""
    try:
        decoded = decode_event(data, NOW)
    except InvalidEvent as error:
        assert isinstance(error.reason, Reason)
        return
    Aggregate().add(decoded, data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes(data: bytes) -> None:
    _total(data)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_document(value: Any) -> None:
    _total(json.dumps(value).encode())


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replaced=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    timestamp=timestamps,
    drop=st.lists(st.sampled_from(FIELDS), max_size=3),
)
@example(replaced={"eventType": [1]}, timestamp="2026-11-24T17:52:13Z", drop=[])  # unhashable type
@example(replaced={"eventType": None}, timestamp="2026-11-24T17:52:13Z", drop=[])
@example(replaced={"version": True}, timestamp="2026-11-24T17:52:13Z", drop=[])
@example(replaced={"userEmail": "a@b.c\n"}, timestamp="2026-11-24T17:52:13Z", drop=[])
def test_every_json_type_in_every_field(replaced: dict[str, Any], timestamp: str, drop: list[str]) -> None:
    document = event() | {"timestamp": timestamp} | replaced
    for name in drop:
        document.pop(name, None)
    _total(json.dumps(document).encode())


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_nesting(depth: int) -> None:
    _total(b"[" * depth + b"]" * depth)
    _total(b'{"version":1,"eventType":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}")


def test_a_valid_event_with_a_deep_unknown_field_is_too_deep_not_a_crash() -> None:
    """Found by the fuzz: msgspec recursed to skip `extra`, and RecursionError stopped the shard."""
    data = json.dumps(event())[:-1].encode() + b',"extra":' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert len(data) <= MAX_EVENT_BYTES
    with pytest.raises(InvalidEvent) as invalid:
        decode_event(data, NOW)
    assert invalid.value.reason is Reason.TOO_DEEP


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" * 5000, b"0." + b"0" * 5000 + b"1", b"NaN"])
def test_huge_and_odd_numbers(number: bytes) -> None:
    _total(b'{"version":' + number + b"}")
    _total(b'{"version":1,"eventType":"API_CALL","timestamp":' + number + b"}")


def test_a_missing_event_type_is_a_field_error_not_an_unknown_type() -> None:
    document = event()
    del document["eventType"]
    with pytest.raises(InvalidEvent) as invalid:
        decode_event(json.dumps(document).encode(), NOW)
    assert invalid.value.reason is Reason.INVALID_FIELD
