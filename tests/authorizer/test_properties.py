"""Property-based tests: arbitrary request shapes never crash the handler nor leak a key."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import authorizer.handler as handler_module
from authorizer.decision import Outcome
from authorizer.errors import Unauthorized
from authorizer.events import build_event, encode_event
from authorizer.keys import generate_key
from authorizer.producer import ProducerStats
from authorizer.request import parse_request
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings
from consumer.testing import FakeClock
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, Aws, new_key

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
header_names = st.sampled_from(
    ["x-api-key", "X-API-KEY", "Authorization", "authorization", "User-Agent"]
) | st.text(max_size=12)


def events(secret: str) -> st.SearchStrategy[Any]:
    key_like = st.sampled_from([secret, f"Bearer {secret}", secret[:-1], secret + " ", secret.upper()])
    header_values = key_like | st.text(max_size=80) | st.text(min_size=257, max_size=2000) | json_values
    headers = st.dictionaries(header_names, header_values, max_size=4) | json_values
    context = st.fixed_dictionaries(
        {},
        optional={
            "requestId": json_values,
            "identity": st.fixed_dictionaries(
                {}, optional={"sourceIp": json_values, "userAgent": header_values}
            )
            | json_values,
            "http": st.fixed_dictionaries({}, optional={"method": json_values, "sourceIp": json_values})
            | json_values,
        },
    )
    event = st.fixed_dictionaries(
        {},
        optional={
            "version": st.sampled_from(["2.0", "1.0"]) | json_values,
            "type": st.just("REQUEST") | json_values,
            "methodArn": st.text(max_size=60) | json_values,
            "routeArn": st.text(max_size=60) | json_values,
            "headers": headers,
            "multiValueHeaders": st.dictionaries(header_names, st.lists(header_values, max_size=2))
            | json_values,
            "requestContext": context | json_values,
            "httpMethod": json_values,
            "resource": json_values,
            "path": st.text(max_size=3000) | json_values,
            "routeKey": json_values,
            "rawPath": json_values,
        },
    )
    return event | json_values


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class RecordingProducer:
    """Keeps emitted events in memory (a fake, so examples stay fast)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def flush(self, timeout_s: float) -> bool:
        return True

    def stats(self) -> ProducerStats:
        return ProducerStats(len(self.events), 0, 0, 0)

    def close(self, timeout_s: float) -> None:
        return None


@pytest.fixture
def wired(aws: Aws) -> Iterator[tuple[str, RecordingProducer, ListHandler]]:
    _, secret = new_key(aws, plan="enterprise")
    producer = RecordingProducer()
    handler_module._instance = Authorizer(
        AuthorizerSettings(api_keys_table=KEYS_TABLE, rate_limit_table=LIMITS_TABLE),
        dynamodb=aws.dynamodb,
        clock=FakeClock(),
        producer=producer,
    )
    capture = ListHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield secret, producer, capture
    root.setLevel(previous)
    root.removeHandler(capture)
    handler_module._instance = None


def assert_valid_answer(answer: dict[str, Any]) -> None:
    if "isAuthorized" in answer:
        assert isinstance(answer["isAuthorized"], bool)
    else:
        assert isinstance(answer["principalId"], str) and answer["principalId"]
        [statement] = answer["policyDocument"]["Statement"]
        assert statement["Effect"] in ("Allow", "Deny") and statement["Action"] == "execute-api:Invoke"
        assert isinstance(statement["Resource"], str)
        if statement["Effect"] == "Allow":  # one exact method, never a wildcard
            assert "*" not in statement["Resource"] and "?" not in statement["Resource"]
    assert all(isinstance(value, str | int | bool) for value in answer["context"].values())
    json.dumps(answer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_event_gets_a_valid_answer_and_no_key_is_logged(
    wired: tuple[str, RecordingProducer, ListHandler], data: st.DataObject
) -> None:
    """Any event gets a policy, a simple response, or API Gateway's 401; no key reaches logs or events."""
    secret, producer, capture = wired
    event = data.draw(events(secret))
    try:
        answer = handler_module.lambda_handler(event, None)
    except Unauthorized:
        assert producer.events[-1]["eventType"] == "API_AUTH_FAILED"
    else:
        assert_valid_answer(answer)
    emitted = producer.events[-1]
    assert len(encode_event(emitted)) < 16 * 1024
    assert secret not in "\n".join(capture.lines) + json.dumps(producer.events)


@settings(max_examples=300, deadline=None)
@given(event=events(generate_key()[1]))
def test_parsing_and_encoding_never_raise(event: Any) -> None:
    """The pure core reads any event and encodes its usage event within the size limit."""
    from authorizer.decision import Decision

    request = parse_request(event)
    encoded = encode_event(build_event(Decision(Outcome.AUTH_FAILED), request, "test", 0.0))
    assert len(encoded) < 16 * 1024
    json.loads(encoded)
