"""A caller cannot break an access-log line: its one value in the format, the path, may hold anything.

API Gateway has been seen not to escape `"` and `\\` inside `$context` values of a JSON format
(DataBiosphere/azul#4348); the format holds one value a caller writes, last, and the decoder reads
the line by position, so it counts whether API Gateway escaped the value or not. `-` in a number
counts the response without that number.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.core.access_logs import ResponseEvent, decode_access_log_line
from consumer.core.aggregate import Aggregate
from consumer.core.events import InvalidEvent, Reason
from consumer.core.routes import Routes
from consumer.testing import access_log_line
from contract.access_logs import CALLER_FIELD, FIELDS, FORMAT, line

NOW = datetime(2026, 11, 24, 18, tzinfo=UTC)
AT = datetime(2026, 11, 24, 17, 52, 13, 123000, tzinfo=UTC)
VALUES = access_log_line(AT, requestId="6499588b-5e44-45d7-84fa-cafc8a3b8ffd", resourcePath="/{proxy+}")
# `$context` variables whose value a caller writes (the AWS variables reference): headers, the
# request line. `requestId` is one too, but API Gateway keeps only a UUID (else UUID_REPLACED_...).
CALLER_VARIABLES = {
    "$context.path",
    "$context.identity.userAgent",
    "$context.domainName",
    "$context.domainPrefix",
    "$context.requestOverride.header.name",
    "$context.error.message",
}
NON_ASCII = ["é", "日本", "\u2028", "😀", "\x00", "\n", "\t", "\x7f"]
ODD = [*string.printable, *NON_ASCII, '","status":"500', '"}', "\\", '\\"', "\\u0041", '{"a":1}']


def _decoded(path: str, *, escape: bool, **fields: str) -> ResponseEvent:
    return decode_access_log_line(line(VALUES | fields | {"path": path}, escape=escape), NOW)


def test_the_format_holds_one_caller_value_and_it_is_last() -> None:
    """Of the variables a caller writes, the format holds the path only, as its last value."""
    assert set(FIELDS.values()) & CALLER_VARIABLES == {"$context.path"}
    assert list(FIELDS)[-1] == CALLER_FIELD == "path"
    assert FORMAT.endswith('"path":"$context.path"}')


@pytest.mark.parametrize("escape", [False, True], ids=["unescaped", "escaped"])
@pytest.mark.parametrize("odd", ODD, ids=repr)
def test_any_character_in_the_path_keeps_the_line(odd: str, escape: bool) -> None:
    """Every printable ASCII character (and some others) in the path: the line counts, as written."""
    event = _decoded(f"/prod/items/a{odd}b", escape=escape)
    assert (event.request_id, event.status, event.response_latency_ms) == (VALUES["requestId"], 200, 41)
    assert (event.source_ip, event.user_email) == ("203.0.113.7", "alice@example.com")
    if escape or "\\" not in odd:  # unescaped, a backslash escape reads as JSON (`\\"` as `"`)
        assert event.path == f"/items/a{odd}b"


@pytest.mark.parametrize("escape", [False, True], ids=["unescaped", "escaped"])
def test_a_path_cannot_forge_the_fields_before_it(escape: bool) -> None:
    """A path that spells out other fields changes none of them."""
    forged = '/prod/x","status":"503","responseLatency":"9","userEmail":"mallory@example.com'
    event = _decoded(forged, escape=escape)
    assert (event.status, event.response_latency_ms, event.user_email) == (200, 41, "alice@example.com")
    assert event.path == forged.removeprefix("/prod")


@settings(max_examples=300, deadline=None)
@given(path=st.text(st.characters(codec="utf-8"), max_size=200), escape=st.booleans())
@example(path='"}', escape=False)
@example(path="\\", escape=False)
def test_any_path_keeps_the_line_fuzzed(path: str, escape: bool) -> None:
    """Fuzzed: whatever the path, escaped or not, the line decodes with the other fields intact."""
    event = _decoded(path, escape=escape)
    assert (event.request_id, event.timestamp, event.status) == (VALUES["requestId"], AT, 200)
    assert (event.integration_latency_ms, event.api_key_id) == (35, "key_123")
    if escape:
        expected = path.removeprefix("/prod") if path.startswith("/prod/") or path == "/prod" else path
        assert event.path == ((expected or "/") if path else path)


@pytest.mark.parametrize("name", [n for n in VALUES if n not in ("path", "stage")])
def test_a_quote_in_a_value_api_gateway_writes_is_invalid_not_a_crash(name: str) -> None:
    """A quote left unescaped where only API Gateway writes is not a line of ours: LOG_EVENT_INVALID."""
    with pytest.raises(InvalidEvent) as raised:
        _decoded("/prod/items/42", escape=False, **{name: 'a"b'})
    assert raised.value.reason is Reason.LOG_EVENT_INVALID


@pytest.mark.parametrize("name", ["status", "responseLatency", "integrationLatency"])
def test_a_dash_in_a_number_costs_the_number_not_the_line(name: str) -> None:
    """`-` in status or a latency: the response counts, without that number."""
    event = _decoded("/prod/items/42", escape=True, **{name: "-"})
    numbers = {
        "status": event.status,
        "responseLatency": event.response_latency_ms,
        "integrationLatency": event.integration_latency_ms,
    }
    assert numbers == {"status": 200, "responseLatency": 41, "integrationLatency": 35} | {name: None}


def test_a_response_without_status_or_latency_still_counts_in_its_endpoint() -> None:
    """The endpoint's response count keeps it; its status class and latency histogram leave it out."""
    aggregate = Aggregate(routes=Routes(("/items/{id}",)))
    for fields in ({}, {"status": "-"}, {"responseLatency": "-"}):
        aggregate.add_response(_decoded("/prod/items/42", escape=True, **fields))
    counters = aggregate.items[("ENDPOINT#GET /items/{id}", "MINUTE#2026-11-24T17:52")].adds
    assert counters["responses"] == 3
    assert counters["s2xx"] == 2
    assert counters["latencySum"] == 82
    assert sum(value for key, value in counters.items() if key.startswith("l_")) == 2
