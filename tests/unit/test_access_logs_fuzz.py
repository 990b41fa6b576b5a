"""Decoding access-log records is total: any bytes give a `LogRecord` or `InvalidEvent`, nothing else.

Like tests/unit/test_decoder_fuzz.py for usage events: a record that makes the decoder raise anything
else would stop its shard for good. Fuzzed here: arbitrary bytes, gzip of arbitrary bytes and JSON,
every JSON type in every field of the envelope, of its log events and of the line, deep nesting,
huge numbers and numeric strings. Every event that comes out keeps the bounds, and no detail quotes
the value it refused.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.core.access_logs import (
    LogRecord,
    ResponseEvent,
    decode_access_log_line,
    decode_log_record,
)
from consumer.core.events import MAX_CLOCK_SKEW, MAX_EVENT_AGE, InvalidEvent, Reason
from contract.events import EMAIL_PATTERN, MAX_EMAIL_CHARS, MAX_SOURCE_IP_CHARS, MAX_TEXT_CHARS

NOW = datetime(2025, 11, 24, 18, tzinfo=UTC)
AT_MS = 1764006733123
MARKER = "zqxSECRETzqx"  # in every string the fuzz writes into a line: never in a detail
LINE_FIELDS = [
    "requestId",
    "requestTimeEpoch",
    "httpMethod",
    "resourcePath",
    "path",
    "status",
    "responseLatency",
    "integrationLatency",
    "sourceIp",
    "userEmail",
    "apiKeyId",
]
ENVELOPE_FIELDS = ["messageType", "owner", "logGroup", "logStream", "subscriptionFilters", "logEvents"]
LOG_EVENT_FIELDS = ["id", "timestamp", "message"]
LINE_REASONS = {Reason.LOG_EVENT_INVALID, Reason.TOO_DEEP, Reason.FUTURE_TIMESTAMP, Reason.STALE_TIMESTAMP}
RECORD_REASONS = {Reason.ENVELOPE_INVALID, Reason.DECOMPRESSION_LIMIT, Reason.TOO_DEEP}
_EMAIL = re.compile(EMAIL_PATTERN)

# Any code point, lone surrogates included: a str can hold them, UTF-8 cannot.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
numeric_strings = st.one_of(
    st.from_regex(r"\A-?[0-9]{0,20}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?\Z"),
    st.integers(min_value=0, max_value=10**25).map(str),  # past timedelta's and datetime's range
    st.sampled_from(["-", "", "0", "100", "599", "600", "1" * 5000, "9999999999999", "NaN", "١٢٣"]),
)
line_values = st.one_of(
    json_values,
    numeric_strings,
    any_text.map(lambda value: MARKER + value),
    st.integers(MAX_TEXT_CHARS - 1, MAX_TEXT_CHARS + 300).map(lambda size: "x" * size),  # at the bound
    st.sampled_from(["Alice@Example.COM", MARKER + "@example.com", "-"]),
)


def line(**fields: Any) -> dict[str, Any]:
    return {
        "requestId": "6499588b-5e44-45d7-84fa-cafc8a3b8ffd",
        "requestTimeEpoch": str(AT_MS),
        "httpMethod": "GET",
        "resourcePath": "/items/{id}",
        "path": "/items/42",
        "status": "200",
        "responseLatency": "41",
        "integrationLatency": "-",
        "sourceIp": "203.0.113.7",
        "userEmail": "alice@example.com",
        "apiKeyId": "key_123",
    } | fields


def text(value: Any) -> str:
    # ensure_ascii: a lone surrogate is written as its escape, as any JSON producer would
    return json.dumps(value, ensure_ascii=True)


def envelope(log_events: list[Any], **fields: Any) -> dict[str, Any]:
    return {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/apigateway/usage-prod",
        "logStream": "0123456789abcdef",
        "subscriptionFilters": ["usage-to-kinesis"],
        "logEvents": log_events,
    } | fields


def check_event(event: ResponseEvent) -> None:
    """What comes out keeps every bound the stores rely on, and encodes to UTF-8."""
    assert event.timestamp.tzinfo is UTC
    assert NOW - MAX_EVENT_AGE <= event.timestamp <= NOW + MAX_CLOCK_SKEW
    assert event.status is None or 100 <= event.status <= 599
    assert event.response_latency_ms is None or event.response_latency_ms >= 0
    assert event.integration_latency_ms is None or event.integration_latency_ms >= 0
    for value in (event.request_id, event.http_method, event.resource_path, event.path):
        assert value is None or len(value) <= MAX_TEXT_CHARS
    assert event.api_key_id is None or len(event.api_key_id) <= MAX_TEXT_CHARS
    assert event.source_ip is None or len(event.source_ip) <= MAX_SOURCE_IP_CHARS
    if event.user_email is not None:
        assert len(event.user_email) <= MAX_EMAIL_CHARS
        assert _EMAIL.match(event.user_email)
        assert event.user_email == event.user_email.lower()
    for value in (event.request_id, event.path, event.api_key_id, event.source_ip):
        if value is not None:
            value.encode()  # a lone surrogate here would fail every write downstream


def check_invalid(error: InvalidEvent, reasons: set[Reason]) -> None:
    assert error.reason in reasons
    assert MARKER.lower() not in str(error).lower()


def total_line(data: bytes | str) -> None:
    """Any line: a bounded event, or InvalidEvent with a line's reason; nothing else escapes."""
    try:
        event = decode_access_log_line(data, NOW)
    except InvalidEvent as error:
        check_invalid(error, LINE_REASONS)
        return
    check_event(event)


def total_record(data: bytes) -> LogRecord | None:
    """Any record: its events in envelope order, or InvalidEvent for the whole; nothing else escapes."""
    try:
        decoded = decode_log_record(data, NOW)
    except InvalidEvent as error:
        check_invalid(error, RECORD_REASONS)
        return None
    assert not (decoded.is_control and decoded.events)
    assert [index for index, _ in decoded.events] == list(range(len(decoded.events)))
    for _, result in decoded.events:
        if isinstance(result, InvalidEvent):
            check_invalid(result, LINE_REASONS)
        else:
            check_event(result)
    return decoded


# -- arbitrary input ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x1f\x8b")
def test_any_bytes_as_a_record(data: bytes) -> None:
    total_record(data)
    total_record(b"\x1f\x8b" + data)  # past the magic, into zlib's header parsing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_gzip_of_any_bytes(data: bytes) -> None:
    total_record(gzip.compress(data))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_gzip_of_any_json(value: Any) -> None:
    total_record(gzip.compress(text(value).encode()))
    total_record(gzip.compress(text(envelope([value])).encode()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048) | any_text)
@example("\ud800")
@example('{"requestId":"\udfff"}')
def test_any_bytes_or_text_as_a_line(data: bytes | str) -> None:
    total_line(data)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_as_a_line(value: Any) -> None:
    total_line(text(value))
    total_line(text(value).encode())


# -- every JSON type in every field -------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replaced=st.dictionaries(st.sampled_from(LINE_FIELDS), line_values, max_size=6),
    drop=st.lists(st.sampled_from(LINE_FIELDS), max_size=3),
)
@example(replaced={"requestTimeEpoch": "9999999999999"}, drop=[])  # the year 2286: future, not overflow
@example(replaced={"requestTimeEpoch": "9" * 20}, drop=[])  # past datetime's range
@example(replaced={"requestTimeEpoch": "0"}, drop=[])
@example(replaced={"status": 200}, drop=[])
@example(replaced={"userEmail": "a@b.c\n"}, drop=[])
@example(replaced={"path": "\ud800"}, drop=[])
@example(replaced={"path": "/" * (MAX_TEXT_CHARS + 1)}, drop=[])
@example(replaced={"apiKeyId": MARKER * 300}, drop=[])
def test_every_json_type_in_every_line_field(replaced: dict[str, Any], drop: list[str]) -> None:
    document = line(**replaced)
    for name in drop:
        document.pop(name, None)
    total_line(text(document))
    total_line(text(document).encode())
    total_line(json.dumps(document, ensure_ascii=False))  # a str may hold lone surrogates raw


@st.composite
def log_events(draw: st.DrawFn) -> list[Any]:
    """A few log events: good lines, lines with fields replaced, and events of any shape."""
    events: list[Any] = []
    for _ in range(draw(st.integers(0, 4))):
        replaced = draw(st.dictionaries(st.sampled_from(LINE_FIELDS), line_values, max_size=3))
        message = draw(st.one_of(st.just(text(line(**replaced))), json_values))
        event = {"id": "38000000000000000000000000000000000000000000000000000000", "timestamp": AT_MS}
        event |= {"message": message} | draw(st.dictionaries(st.sampled_from(LOG_EVENT_FIELDS), json_values))
        events.append(draw(st.one_of(st.just(event), json_values)))
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=log_events(),
    replaced=st.dictionaries(
        st.sampled_from(ENVELOPE_FIELDS),
        json_values | st.sampled_from(["DATA_MESSAGE", "CONTROL_MESSAGE", MARKER]),
        max_size=3,
    ),
    drop=st.lists(st.sampled_from(ENVELOPE_FIELDS), max_size=2),
)
def test_every_json_type_in_every_envelope_field(
    events: list[Any], replaced: dict[str, Any], drop: list[str]
) -> None:
    document = envelope(events) | replaced
    for name in drop:
        document.pop(name, None)
    decoded = total_record(gzip.compress(text(document).encode()))
    if decoded is not None and not decoded.is_control:
        assert len(decoded.events) == len(document["logEvents"])  # one result per log event


# -- deep nesting, huge numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_nesting_anywhere(depth: int) -> None:
    """In the line, in a log event, in its message, in the envelope: a reason, never a RecursionError."""
    nested = "[" * depth + "]" * depth
    deep_object = '{"a":' * depth + "1" + "}" * depth
    for deep in (nested, deep_object):
        line_with_deep = text(line())[:-1] + ',"extra":' + deep + "}"
        total_line(line_with_deep)
        total_line(deep)
        for document in (
            '{"messageType":"DATA_MESSAGE","logEvents":[' + deep + "]}",
            '{"messageType":"DATA_MESSAGE","logEvents":[{"message":"x","extra":' + deep + "}]}",
            '{"messageType":"DATA_MESSAGE","owner":' + deep + ',"logEvents":[]}',
            '{"messageType":' + deep + "}",
            text(envelope([{"message": line_with_deep}, {"message": text(line())}])),
            deep,
        ):
            total_record(gzip.compress(document.encode()))


@pytest.mark.parametrize(
    "number", ["1e400", "-1e400", "1" * 5000, "0." + "0" * 5000 + "1", "NaN", "Infinity", "-0", "1E+2"]
)
def test_huge_and_odd_numbers(number: str) -> None:
    """As JSON numbers or as the strings of the format, in every numeric field: a reason or an event."""
    for name in ("requestTimeEpoch", "status", "responseLatency", "integrationLatency"):
        total_line(text(line(**{name: number})))
        total_line(text(line())[:-1] + f',"{name}":{number}}}')
    for document in (
        '{"messageType":"DATA_MESSAGE","logEvents":[{"timestamp":' + number + ',"message":"{}"}]}',
        '{"messageType":' + number + ',"logEvents":[]}',
        '{"messageType":"DATA_MESSAGE","logEvents":' + number + "}",
    ):
        total_record(gzip.compress(document.encode()))
