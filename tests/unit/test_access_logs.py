"""Decoding API Gateway access logs delivered by a CloudWatch Logs subscription."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from consumer.core import access_logs
from consumer.core.access_logs import (
    MAX_INFLATED_BYTES,
    MAX_INFLATION_RATIO,
    MAX_LOG_EVENTS,
    LogRecord,
    ResponseEvent,
    decode_access_log_line,
    decode_log_record,
    is_gzip,
)
from consumer.core.events import MAX_CLOCK_SKEW, MAX_EVENT_AGE, InvalidEvent, Reason
from consumer.testing import access_log_line, event, log_envelope, subscription_record
from contract.events import MAX_EMAIL_CHARS, MAX_TEXT_CHARS

AT_MS = 1764006733123  # 2025-11-24T17:52:13.123Z
AT = datetime(2025, 11, 24, 17, 52, 13, 123000, tzinfo=UTC)
NOW = datetime(2025, 11, 24, 18, tzinfo=UTC)
SECRET = "cmpl_live_S3CR3T"
REQUIRED = ["requestId", "requestTimeEpoch", "httpMethod", "resourcePath", "status", "responseLatency"]


def line(**fields: str) -> dict[str, str]:
    """An access-log line in the stage's format: every value a string, as API Gateway writes it."""
    return access_log_line(AT, **fields)


def text(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


envelope, record = log_envelope, subscription_record


def control_message() -> dict[str, Any]:
    message = "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."
    return envelope(message, message_type="CONTROL_MESSAGE", owner="CloudwatchLogs", logStream="")


def reason_of(data: bytes) -> Reason:
    with pytest.raises(InvalidEvent) as caught:
        decode_log_record(data, NOW)
    return caught.value.reason


def line_error(document: dict[str, Any] | str | bytes) -> InvalidEvent:
    raw = text(document) if isinstance(document, dict) else document
    with pytest.raises(InvalidEvent) as caught:
        decode_access_log_line(raw, NOW)
    return caught.value


# -- one line ---------------------------------------------------------------------------------------


def test_decodes_a_line() -> None:
    """Every field of the format lands in the event, numbers as ints and the time as aware UTC."""
    decoded = decode_access_log_line(text(line(requestId="6499588b-5e44-45d7-84fa-cafc8a3b8ffd")), NOW)
    assert decoded == ResponseEvent(
        request_id="6499588b-5e44-45d7-84fa-cafc8a3b8ffd",
        timestamp=AT,
        http_method="GET",
        resource_path="/items/{id}",
        path="/items/42",
        status=200,
        response_latency_ms=41,
        integration_latency_ms=35,
        source_ip="203.0.113.7",
        user_email="alice@example.com",
        api_key_id="key_123",
    )


def test_bytes_and_text_decode_alike() -> None:
    """A line may be given as bytes or as the str a log event holds."""
    document = line(path="/prod/items/ünïcode")
    assert decode_access_log_line(text(document).encode(), NOW) == decode_access_log_line(text(document), NOW)


def test_a_dash_is_no_value() -> None:
    """Where a value may be missing, API Gateway's "-" becomes None."""
    optional = ["path", "integrationLatency", "sourceIp", "userEmail", "apiKeyId"]
    decoded = decode_access_log_line(text(line(**dict.fromkeys(optional, "-"))), NOW)
    assert (decoded.path, decoded.integration_latency_ms, decoded.source_ip) == (None, None, None)
    assert (decoded.user_email, decoded.api_key_id) == (None, None)


def test_a_request_the_authorizer_refused() -> None:
    """No integration ran and no caller is known: a 403 with neither latency nor user."""
    refused = line(status="403", integrationLatency="-", userEmail="-", apiKeyId="-", responseLatency="12")
    decoded = decode_access_log_line(text(refused), NOW)
    assert (decoded.status, decoded.response_latency_ms, decoded.integration_latency_ms) == (403, 12, None)
    assert decoded.user_email is None
    assert decoded.api_key_id is None


def test_the_gateway_response_type_is_read() -> None:
    """`$context.error.responseType`: what tells a stage's throttling (no authorizer ran) from the
    authorizer's own 429 (`ACCESS_DENIED`); `-` for the backend's response."""
    throttled = decode_access_log_line(text(line(status="429", errorType="THROTTLED")), NOW)
    assert (throttled.status, throttled.error_type) == (429, "THROTTLED")
    assert decode_access_log_line(text(line()), NOW).error_type is None
    for odd in ("throttled", "THROTTLED ", "A" * 65, "-"):  # costs the type, never the line
        assert decode_access_log_line(text(line(errorType=odd)), NOW).error_type is None


def test_a_request_that_matched_no_route_still_counts() -> None:
    """API Gateway has no route template for it (`-`): the response counts, under the route its path
    matches (`consumer.core.routes`), else `(other)`."""
    decoded = decode_access_log_line(
        text(line(resourcePath="-", errorType="MISSING_AUTHENTICATION_TOKEN")), NOW
    )
    assert (decoded.resource_path, decoded.path, decoded.error_type) == (
        None, "/items/42", "MISSING_AUTHENTICATION_TOKEN"
    )  # fmt: skip


def test_optional_fields_may_be_absent_and_unknown_ones_are_ignored() -> None:
    """Format changes roll out: an absent optional field is no value, a new field is ignored."""
    document = {name: value for name, value in line().items() if name in REQUIRED} | {"protocol": "HTTP/1.1"}
    decoded = decode_access_log_line(text(document), NOW)
    assert (decoded.path, decoded.user_email, decoded.integration_latency_ms) == (None, None, None)


@pytest.mark.parametrize("email", ["Alice@Example.COM", "ALICE@EXAMPLE.COM", "alice@example.com"])
def test_emails_are_stored_canonical(email: str) -> None:
    """One user is one identity: the email is stored lower-cased, as the usage decoder counts it."""
    assert decode_access_log_line(text(line(userEmail=email)), NOW).user_email == "alice@example.com"


def test_caller_written_fields_are_cut_not_refused() -> None:
    """A long path is the caller's choice: cut to the bound, the request still counts."""
    for path in ("/" + "p" * 9000, '/"' * 4500):
        decoded = decode_access_log_line(text(line(path=path)), NOW)
        assert decoded.path == path[:MAX_TEXT_CHARS]


@pytest.mark.parametrize("name", REQUIRED)
def test_a_required_field_missing_is_invalid(name: str) -> None:
    """Without one of the fields we count by, the line cannot count."""
    document = line()
    del document[name]
    error = line_error(document)
    assert error.reason is Reason.LOG_EVENT_INVALID
    assert name in error.detail


@pytest.mark.parametrize("name", ["requestId", "requestTimeEpoch", "httpMethod"])
def test_a_required_field_without_value_is_invalid(name: str) -> None:
    """API Gateway's "-" in a field we count by is as good as missing (a number's "-" costs only the
    number: tests/unit/test_access_log_escaping.py)."""
    error = line_error(line(**{name: "-"}))
    assert error.reason is Reason.LOG_EVENT_INVALID
    assert name in error.detail


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("status", "abc"),
        ("status", "99"),
        ("status", "600"),
        ("status", "2000"),
        ("status", " 200"),
        ("status", "200\n"),
        ("requestTimeEpoch", "yesterday"),
        ("requestTimeEpoch", "1.764006733123e12"),
        ("requestTimeEpoch", "-1"),
        ("requestTimeEpoch", "1" * 5000),
        ("responseLatency", "-5"),
        ("responseLatency", "1.5"),
        ("responseLatency", "9" * 10),
        ("integrationLatency", "n/a"),
        ("userEmail", "not-an-email"),
        ("userEmail", "ü@example.com"),
        ("userEmail", "alice@example.com\n"),
        ("userEmail", ""),
        ("requestId", ""),
        ("requestId", "r" * (MAX_TEXT_CHARS + 1)),
        ("httpMethod", "G" * (MAX_TEXT_CHARS + 1)),
        ("resourcePath", "/" * (MAX_TEXT_CHARS + 1)),
        ("apiKeyId", "k" * (MAX_TEXT_CHARS + 1)),
        ("sourceIp", "2001:db8::1" * 10),
        ("userEmail", "a" * 64 + "@" + "b" * MAX_EMAIL_CHARS),
    ],
)
def test_a_malformed_or_oversize_field_is_invalid(name: str, value: str) -> None:
    """Fields API Gateway or our authorizer writes are checked and bounded: anything else is not ours."""
    error = line_error(line(**{name: value}))
    assert error.reason is Reason.LOG_EVENT_INVALID
    assert name in error.detail


@pytest.mark.parametrize("value", [200, None, ["200"], {"v": "200"}, True, 2.0])
def test_a_value_that_is_not_a_string_is_invalid(value: Any) -> None:
    """Every value of the format is a quoted string."""
    error = line_error(text(line()).replace('"status":"200"', '"status":' + json.dumps(value)))
    assert error.reason is Reason.LOG_EVENT_INVALID


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"requestId":"\xff"}', '{"requestId":"\ud800"}', "null"],
)
def test_what_is_not_a_line_of_ours_is_invalid(raw: bytes | str) -> None:
    """Not JSON, not UTF-8, a lone surrogate (only a str can hold one), not an object: invalid."""
    assert line_error(raw).reason is Reason.LOG_EVENT_INVALID


def test_a_deep_line_is_too_deep_not_a_crash() -> None:
    """msgspec recurses to skip an unknown field: RecursionError becomes a reason."""
    deep = text(line())[:-1] + ',"extra":' + "[" * 100_000 + "]" * 100_000 + "}"
    assert line_error(deep).reason is Reason.TOO_DEEP


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (NOW + MAX_CLOCK_SKEW + timedelta(milliseconds=1), Reason.FUTURE_TIMESTAMP),
        (NOW + timedelta(days=365), Reason.FUTURE_TIMESTAMP),
        (NOW - MAX_EVENT_AGE - timedelta(milliseconds=1), Reason.STALE_TIMESTAMP),
        (datetime(1970, 1, 1, tzinfo=UTC), Reason.STALE_TIMESTAMP),
    ],
)
def test_a_broken_clock_is_refused_like_in_usage_events(at: datetime, reason: Reason) -> None:
    """The usage decoder's future and stale bounds apply to the request time too."""
    epoch_ms = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert line_error(line(requestTimeEpoch=str(epoch_ms))).reason is reason


@pytest.mark.parametrize("at", [NOW + MAX_CLOCK_SKEW, NOW - MAX_EVENT_AGE])
def test_the_time_bounds_are_inclusive(at: datetime) -> None:
    """Right at the skew or the age bound, a request still counts (as in `decode_event`)."""
    epoch_ms = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert decode_access_log_line(text(line(requestTimeEpoch=str(epoch_ms))), NOW).timestamp == at


@pytest.mark.parametrize(
    "fields",
    [
        {"apiKeyId": SECRET * 200},
        {"userEmail": SECRET},
        {"userEmail": SECRET + "@example.com" + "m" * 300},
        {"sourceIp": SECRET * 10},
        {"status": SECRET},
        {"requestId": SECRET * 200},
        {"integrationLatency": SECRET},
    ],
)
def test_the_detail_never_holds_the_value(fields: dict[str, str]) -> None:
    """A dead letter's reason may be logged: the value refused (maybe a key) stays out of it."""
    error = line_error(line(**fields))
    assert SECRET.lower() not in str(error).lower()


# -- one record -------------------------------------------------------------------------------------


def test_decodes_every_log_event_of_a_record_in_order() -> None:
    """A record holds many lines: each one's event, indexed by its place in the envelope."""
    lines = [line(requestId=f"r{index}", status=str(200 + index)) for index in range(5)]
    decoded = decode_log_record(record(envelope(*map(text, lines))), NOW)
    assert not decoded.is_control
    assert [index for index, _ in decoded.events] == list(range(5))
    assert [(result.request_id, result.status) for _, result in decoded.events] == [  # type: ignore[union-attr]
        (f"r{index}", 200 + index) for index in range(5)
    ]


def test_a_control_message_has_nothing_to_count() -> None:
    """CloudWatch Logs checking the destination: skipped, though it carries a log event."""
    assert decode_log_record(record(control_message()), NOW) == LogRecord(is_control=True, events=())


def test_a_bad_log_event_does_not_spoil_the_others() -> None:
    """Bad JSON, a missing field or a broken clock in one line: only that line fails."""
    messages = [
        text(line(requestId="first")),
        text(line())[:-7],  # cut short: not JSON
        text(line(requestId="third")),
        text({k: v for k, v in line().items() if k != "status"}),
        text(line(requestTimeEpoch=str(AT_MS + 10**9))),
        '{"extra":' + "[" * 5000 + "]" * 5000 + "}",
        text(line(requestId="last")),
    ]
    decoded = decode_log_record(record(envelope(*messages)), NOW)
    outcomes = [
        result.request_id if isinstance(result, ResponseEvent) else result.reason
        for _, result in decoded.events
    ]
    assert outcomes == [
        "first",
        Reason.LOG_EVENT_INVALID,
        "third",
        Reason.LOG_EVENT_INVALID,
        Reason.FUTURE_TIMESTAMP,
        Reason.TOO_DEEP,
        "last",
    ]


@pytest.mark.parametrize("log_event", [5, None, [], {}, {"id": "1"}, {"message": 42}, {"message": None}])
def test_a_log_event_of_the_wrong_shape_fails_alone(log_event: Any) -> None:
    """A log event that is not an object with a string message is invalid, its neighbours count."""
    document = envelope(text(line(requestId="before")), text(line(requestId="after")))
    document["logEvents"].insert(1, log_event)
    decoded = decode_log_record(record(document), NOW)
    assert [type(result) for _, result in decoded.events] == [ResponseEvent, InvalidEvent, ResponseEvent]
    assert decoded.events[1][1].reason is Reason.LOG_EVENT_INVALID  # type: ignore[union-attr]


def test_a_log_event_with_bad_utf8_fails_alone() -> None:
    """Invalid UTF-8 inside one log event is found when that event is read, not the whole record's."""
    document = text(envelope(text(line()), "MARK")).encode().replace(b"MARK", b"\xff\xfe")
    decoded = decode_log_record(gzip.compress(document), NOW)
    assert isinstance(decoded.events[0][1], ResponseEvent)
    assert decoded.events[1][1].reason is Reason.LOG_EVENT_INVALID  # type: ignore[union-attr]


def test_an_envelope_without_log_events_counts_nothing() -> None:
    """An empty batch is a valid record with no event."""
    assert decode_log_record(record(envelope()), NOW) == LogRecord(is_control=False, events=())


# Deeper than msgspec can read (Python's recursion limit is 1,000)
DEEP = b"[" * 5000 + b"]" * 5000


def _gzip_with_trailing_bytes() -> bytes:
    return record(envelope()) + b"\x00"


def _gzip_with_bad_crc() -> bytes:
    data = bytearray(record(envelope(text(line()))))
    data[-8] ^= 0xFF  # the CRC-32 of the trailer
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (json.dumps(event()).encode(), Reason.ENVELOPE_INVALID),  # a usage event: not gzip
        (b"", Reason.ENVELOPE_INVALID),
        (b"\x1f\x8b", Reason.ENVELOPE_INVALID),
        (b"\x1f\x8b" + b"\x00" * 30, Reason.ENVELOPE_INVALID),
        (record(envelope(text(line())))[:-12], Reason.ENVELOPE_INVALID),  # truncated
        (record(envelope(text(line())))[:-8], Reason.ENVELOPE_INVALID),  # no trailer: CRC unchecked
        (_gzip_with_bad_crc(), Reason.ENVELOPE_INVALID),
        (_gzip_with_trailing_bytes(), Reason.ENVELOPE_INVALID),
        (record(b"not json"), Reason.ENVELOPE_INVALID),
        (record(b'{"messageType":"\xff"}'), Reason.ENVELOPE_INVALID),
        (record([envelope()]), Reason.ENVELOPE_INVALID),
        (record({"logEvents": []}), Reason.ENVELOPE_INVALID),
        (record({"messageType": "DATA_MESSAGE"}), Reason.ENVELOPE_INVALID),
        (record(envelope(message_type="SOMETHING_ELSE")), Reason.ENVELOPE_INVALID),
        (record(envelope(message_type="data_message")), Reason.ENVELOPE_INVALID),
        (record(envelope(messageType=None)), Reason.ENVELOPE_INVALID),
        (record(envelope(logEvents={"message": "x"})), Reason.ENVELOPE_INVALID),
        (record(envelope(logEvents=[{}] * (MAX_LOG_EVENTS + 1))), Reason.ENVELOPE_INVALID),
        (record(b'{"messageType":"DATA_MESSAGE","logEvents":[' + DEEP + b"]}"), Reason.TOO_DEEP),
        (record(b'{"owner":' + DEEP + b',"messageType":"DATA_MESSAGE","logEvents":[]}'), Reason.TOO_DEEP),
    ],
)
def test_a_record_that_cannot_be_read_is_invalid_whole(data: bytes, reason: Reason) -> None:
    """Not gzip, corrupt gzip, not an envelope, an unknown message type, too deep: one reason."""
    assert reason_of(data) is reason


def test_an_unknown_message_type_stays_out_of_the_detail() -> None:
    """The envelope's own values may be anything: the detail names the field only."""
    with pytest.raises(InvalidEvent) as caught:
        decode_log_record(record(envelope(message_type=SECRET)), NOW)
    assert SECRET not in str(caught.value)


def test_is_gzip_tells_a_subscription_record_from_a_usage_event() -> None:
    """The gzip magic bytes start a subscription's record; a usage event starts with `{`."""
    assert is_gzip(record(envelope()))
    assert not is_gzip(json.dumps(event()).encode())
    assert not is_gzip(b"")
    assert not is_gzip(b"\x1f")


# -- bounds -----------------------------------------------------------------------------------------


@cache
def zeros_bomb(mebibytes: int, level: int = 9) -> bytes:
    """The gzip of that many MiB of zeros, compressed a MiB at a time (never held whole)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(mebibytes)) + compressor.flush()


def peak_bytes_decoding(data: bytes) -> tuple[Reason, int]:
    """The reason the record is refused, and the most memory decoding it took."""
    tracemalloc.start()
    try:
        reason = reason_of(data)
        return reason, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_bomb_is_refused_without_inflating_it() -> None:
    """256 MiB of zeros in a 250 KiB record: refused at the bound, having held about twice the bound."""
    bomb = zeros_bomb(256)
    assert len(bomb) < 300 * 1024
    reason, peak = peak_bytes_decoding(bomb)
    assert reason is Reason.DECOMPRESSION_LIMIT
    # zlib's output blocks and their join: twice the bound at most, far from the 256 MiB inflated
    assert peak < 2 * MAX_INFLATED_BYTES + 4 * 1024 * 1024


def test_a_small_bomb_is_refused_by_its_ratio() -> None:
    """A 1 KiB record inflating to 1 MiB: refused at MAX_INFLATION_RATIO times its size, before the 8 MiB."""
    bomb = zeros_bomb(1)
    assert MAX_INFLATION_RATIO * len(bomb) < 1024 * 1024
    reason, peak = peak_bytes_decoding(bomb)
    assert reason is Reason.DECOMPRESSION_LIMIT
    assert peak < 2 * MAX_INFLATION_RATIO * len(bomb) + 256 * 1024


def test_a_bomb_of_low_ratio_is_refused_by_the_absolute_bound() -> None:
    """Compressed at level 1 (~230:1, under the ratio bound), 64 MiB of zeros still stop at 8 MiB."""
    bomb = zeros_bomb(64, level=1)
    assert MAX_INFLATION_RATIO * len(bomb) > MAX_INFLATED_BYTES
    with pytest.raises(InvalidEvent, match=f"past {MAX_INFLATED_BYTES} bytes") as caught:
        decode_log_record(bomb, NOW)
    assert caught.value.reason is Reason.DECOMPRESSION_LIMIT


def test_the_absolute_bound_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record inflating to exactly the bound decodes; one byte more is refused."""
    document = text(envelope(text(line()))).encode()
    monkeypatch.setattr(access_logs, "MAX_INFLATED_BYTES", len(document))
    assert len(decode_log_record(gzip.compress(document), NOW).events) == 1
    monkeypatch.setattr(access_logs, "MAX_INFLATED_BYTES", len(document) - 1)
    assert reason_of(gzip.compress(document)) is Reason.DECOMPRESSION_LIMIT


def full_batch(path: str = "/prod/items/42", batch_bytes: int = 1024 * 1024) -> dict[str, Any]:
    """As many lines as a CloudWatch Logs batch holds: their bytes plus 26 each, up to 1 MiB."""
    messages: list[str] = []
    size = 0
    while True:
        message = text(line(path=path, requestTimeEpoch=str(AT_MS + len(messages))))
        size += len(message.encode()) + 26
        if size > batch_bytes:
            return envelope(*messages)
        messages.append(message)


def test_a_full_batch_of_ordinary_requests_is_within_both_bounds() -> None:
    """A 1 MiB batch: its envelope inflates far below 8 MiB, its ratio far below the ratio bound."""
    document = text(full_batch()).encode()
    data = gzip.compress(document)
    assert len(document) < MAX_INFLATED_BYTES / 4
    assert len(document) / len(data) < MAX_INFLATION_RATIO / 10
    decoded = decode_log_record(data, NOW)
    assert all(isinstance(result, ResponseEvent) for _, result in decoded.events)


def test_a_caller_cannot_get_a_record_refused_with_a_compressible_path() -> None:
    """A long path of quotes (4 bytes each in the envelope) compresses ~350:1, under the bound."""
    document = text(full_batch(path="/" + '"' * 6000)).encode()
    data = gzip.compress(document, compresslevel=9)
    assert len(document) / len(data) > 200  # as compressible as access logs get
    decoded = decode_log_record(data, NOW)
    assert all(isinstance(result, ResponseEvent) for _, result in decoded.events)
