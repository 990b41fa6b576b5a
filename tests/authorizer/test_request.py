"""Unit tests of reading authorizer events into requests."""

from __future__ import annotations

from authorizer.request import MAX_FIELD_CHARS, ApiFormat, KeyProblem, parse_request
from tests.authorizer.conftest import METHOD_ARN, http_v2_event, rest_event
from tests.samples import sample


def test_rest_event_fields() -> None:
    """A REST event yields its method ARN, route template, path, IP, agent and request id."""
    request = parse_request(rest_event({"x-api-key": "ck_abc"}))
    assert request.api_format is ApiFormat.REST
    assert request.presented_key == "ck_abc"
    assert (request.method_arn, request.http_method) == (METHOD_ARN, "GET")
    assert (request.resource_path, request.path) == ("/items/{id}", "/items/42")
    assert (request.source_ip, request.user_agent, request.request_id) == ("203.0.113.9", "curl/8.5", "req-1")


def test_method_arn_is_kept_exactly_for_the_policy() -> None:
    """A long ARN, or one whose path holds something key-like, is neither cut nor redacted: the
    policy must name the very method API Gateway asked about, or a valid caller gets a 403."""
    long_arn = METHOD_ARN + "/" + "a" * 400
    keyed_arn = METHOD_ARN.replace("/items/42", "/share/ck_abcdefabcdef_xyzw")
    for arn in (long_arn, keyed_arn):
        assert parse_request(rest_event({"x-api-key": "ck_a"}, methodArn=arn)).method_arn == arn
        assert parse_request({**http_v2_event({"x-api-key": "ck_a"}), "routeArn": arn}).method_arn == arn
    assert parse_request(rest_event({"x-api-key": "ck_a"}, methodArn="arn\n\x00")).method_arn is None


def test_http_v2_event_fields() -> None:
    """An HTTP API v2 event yields the route template from the route key."""
    request = parse_request(http_v2_event({"x-api-key": "ck_abc"}))
    assert request.api_format is ApiFormat.HTTP_V2
    assert (request.http_method, request.resource_path, request.path) == ("GET", "/items/{id}", "/items/42")
    assert (request.source_ip, request.user_agent, request.request_id) == ("198.51.100.7", "ua/1", "req-2")


def test_header_names_are_case_insensitive() -> None:
    """REST passes header names as sent; any case is found."""
    assert parse_request(rest_event({"X-API-Key": "ck_a"})).presented_key == "ck_a"


def test_bearer_token_is_read_when_no_api_key_header() -> None:
    """`Authorization: Bearer` carries the key when `x-api-key` is absent."""
    assert parse_request(rest_event({"Authorization": "Bearer ck_b"})).presented_key == "ck_b"
    assert parse_request(rest_event({"authorization": "bearer  ck_b "})).presented_key == "ck_b"


def test_unusable_api_key_header_falls_back_to_bearer() -> None:
    """An empty, blank or non-string `x-api-key` does not hide an `Authorization: Bearer` key; with a
    key in neither, a malformed value is reported over an absent one."""
    for value in ["", "  ", None, 42, ["ck_a"]]:
        request = parse_request(rest_event({"x-api-key": value, "Authorization": "Bearer ck_b"}))
        assert (request.presented_key, request.key_problem) == ("ck_b", None)
    assert parse_request(rest_event({"x-api-key": 42, "Authorization": "Basic x"})).key_problem is (
        KeyProblem.MALFORMED_KEY
    )
    assert parse_request(rest_event({"x-api-key": "", "Authorization": "Bearer \u00e9"})).key_problem is (
        KeyProblem.MALFORMED_KEY
    )
    assert parse_request(rest_event({"x-api-key": "", "Authorization": "Basic x"})).key_problem is (
        KeyProblem.MISSING_KEY
    )


def test_multi_value_headers_are_read() -> None:
    """A key only in `multiValueHeaders` is found."""
    event = rest_event(None, multiValueHeaders={"x-api-key": ["ck_m"]})
    assert parse_request(event).presented_key == "ck_m"


def test_missing_key() -> None:
    """No header, an empty one, or a non-Bearer Authorization is a missing key."""
    for headers in [{}, {"x-api-key": "  "}, {"Authorization": "Basic abc"}, None]:
        request = parse_request(rest_event(headers))
        assert request.key_problem is KeyProblem.MISSING_KEY and request.presented_key is None


def test_malformed_values() -> None:
    """Huge, non-ASCII, control-character and non-string values are malformed."""
    for value in ["k" * 10_000, "ck_é", "ck_\x00", 42, ["ck_a"], None]:
        request = parse_request(rest_event({"x-api-key": value}))
        assert request.key_problem is KeyProblem.MALFORMED_KEY and request.presented_key is None


def test_any_shape_becomes_a_request() -> None:
    """Non-dict events and wrongly typed parts give a request with a missing key."""
    shapes: list[object] = [None, 1, "x", [], {"headers": "x", "requestContext": 5, "methodArn": 7}]
    for event in shapes:
        request = parse_request(event)
        assert request.key_problem is KeyProblem.MISSING_KEY and request.method_arn is None


def test_long_fields_are_truncated_and_surrogates_replaced() -> None:
    """Descriptive fields are capped and always encodable as UTF-8."""
    request = parse_request(rest_event(path="/" + "a" * 5000, httpMethod="\ud800"))
    assert request.path is not None and len(request.path) == MAX_FIELD_CHARS
    assert request.http_method is not None and request.http_method.encode()


def test_repr_hides_the_key() -> None:
    """The request's repr never contains the presented key."""
    assert "ck_secret" not in repr(parse_request(rest_event({"x-api-key": "ck_secret"})))


def test_keys_in_descriptive_fields_are_redacted() -> None:
    """A key pasted into the path or user agent is redacted, even where the cap would cut it."""
    from authorizer.keys import generate_key

    _, secret = generate_key()
    event = rest_event(path="/x/" + "a" * 280 + secret)
    event["requestContext"]["identity"]["userAgent"] = f"tool {secret[:-1]}"
    request = parse_request(event)
    assert request.path == "/x/" + "a" * 280 + "[REDACTED]"[: MAX_FIELD_CHARS - 284]
    assert request.user_agent == "tool [REDACTED]"


def test_the_receive_time_is_api_gateways_own() -> None:
    """`requestTimeEpoch` (REST, payload 1.0) and `timeEpoch` (v2), from samples nobody here wrote;
    anything but a whole positive number of milliseconds is no time."""
    assert parse_request(sample("apiGatewayAuthorizerRequestEvent")).received_ms == 1629470210043
    assert parse_request(sample("apiGatewayAuthorizerV2Event")).received_ms == 1583348638390
    for odd in (True, "1629470210043", 1629470210043.5, -1, 0, 10**13, None):
        event = rest_event()
        event["requestContext"]["requestTimeEpoch"] = odd
        assert parse_request(event).received_ms is None
