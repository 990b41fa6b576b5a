"""Functional tests of the authorizer against moto: answers and the exact events emitted."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

import authorizer.handler as handler_module
import authorizer.service as service_module
from authorizer.decision import Outcome, Reason
from authorizer.errors import KeyStoreUnavailable, Unauthorized
from authorizer.keystore import get_key, revoke_key
from authorizer.metrics import RATE_LIMIT_FAIL_OPEN, Tally
from authorizer.producer import NullProducer
from authorizer.request import parse_request
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings
from consumer.testing import FakeClock
from contract.environment import ConfigError
from contract.events import UsageEventV1
from tests.authorizer.conftest import (
    KEYS_TABLE,
    LIMITS_TABLE,
    METHOD_ARN,
    STREAM,
    Aws,
    count_calls,
    http_v2_event,
    new_key,
    rest_event,
)
from tests.samples import sample

SETTINGS = AuthorizerSettings(
    environment="test",
    stream_name=STREAM,
    api_keys_table=KEYS_TABLE,
    rate_limit_table=LIMITS_TABLE,
    analytics_enabled=True,
)
REQUEST_FIELDS = {
    "version": 1,
    "environment": "test",
    "httpMethod": "GET",
    "resourcePath": "/items/{id}",
    "path": "/items/42",
    "sourceIp": "203.0.113.9",
    "userAgent": "curl/8.5",
    "requestId": "req-1",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def make(aws: Aws, clock: FakeClock, settings: AuthorizerSettings = SETTINGS) -> Authorizer:
    return Authorizer(settings, dynamodb=aws.dynamodb, kinesis=aws.kinesis, clock=clock)


OWN_ID = "<the event's own id>"


def expected_event(
    event_type: str, reason: str | None = None, key_id: str | None = None, email: str | None = None
) -> dict[str, Any]:
    """The whole event `rest_event` yields, as read back with its partition key: the user's hash,
    else the event's own id (events of unknown callers spread over every shard)."""
    return {
        **REQUEST_FIELDS,
        "partitionKey": hashlib.sha256(email.encode()).hexdigest()[:32] if email else OWN_ID,
        "eventType": event_type,
        "userEmail": email,
        "apiKeyId": key_id,
        "plan": "free" if email else None,
        "reason": reason,
    }


class StaleReplica:
    """The keys table as an eventually consistent read may see it just after a write: not there yet."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.consistent_reads: list[bool] = []

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.consistent_reads.append(kwargs["ConsistentRead"])
        return self._client.get_item(**kwargs) if kwargs["ConsistentRead"] else {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class BrokenProducer(NullProducer):
    """Raises from `emit` or `flush`, quoting the event as a careless client library might."""

    def __init__(self, broken: str) -> None:
        self.broken = broken

    def emit(self, event: UsageEventV1) -> None:
        if self.broken == "emit":
            raise RuntimeError(f"cannot send {event}")

    def flush(self, timeout_s: float) -> bool:
        if self.broken == "flush":
            raise RuntimeError("flush failed")
        return True


def sent_events(aws: Aws, authorizer: Authorizer) -> list[dict[str, Any]]:
    assert authorizer.producer.flush(5)
    events = aws.read_stream()
    for event in events:
        event_id = event.pop("eventId")
        assert UUID.match(event_id)
        if event["partitionKey"] == event_id:
            event["partitionKey"] = OWN_ID
        assert re.fullmatch(r"2026-11-18T11:0\d:\d\d\.\d{3}Z", event.pop("timestamp"))
    return events


def test_valid_key_is_allowed_and_metered(aws: Aws, clock: FakeClock) -> None:
    """A valid key gets an Allow with the caller context and one API_CALL event keyed by user."""
    key_id, secret = new_key(aws)
    authorizer = make(aws, clock)
    response = authorizer.handle(rest_event({"x-api-key": secret}))
    assert response["principalId"] == key_id
    assert response["policyDocument"]["Statement"][0] == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": METHOD_ARN,
    }
    assert response["context"] == {
        "outcome": "ALLOWED",
        "userEmail": "ada@example.com",
        "apiKeyId": key_id,
        "plan": "free",
    }
    assert sent_events(aws, authorizer) == [
        expected_event("API_CALL", key_id=key_id, email="ada@example.com")
    ]
    assert get_key(aws.dynamodb, KEYS_TABLE, key_id).last_used_at == "2026-11-18T11:06:40.250Z"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "MISSING_KEY"),
        ({"x-api-key": "not-a-key"}, "MALFORMED_KEY"),
        ({"x-api-key": "ck_\u00e9"}, "MALFORMED_KEY"),
        ({"Authorization": "Bearer " + "x" * 5000}, "MALFORMED_KEY"),
    ],
)
def test_key_problems_are_denied_anonymously(aws: Aws, clock: FakeClock, headers: Any, reason: str) -> None:
    """Missing and malformed keys are denied with the reason; the event has no user and the IP as key."""
    authorizer = make(aws, clock)
    response = authorizer.handle(rest_event(headers))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert response["context"] == {"outcome": "AUTH_FAILED", "reason": reason}
    assert sent_events(aws, authorizer) == [expected_event("API_AUTH_FAILED", reason)]


def test_unknown_key_is_denied(aws: Aws, clock: FakeClock) -> None:
    """A well-formed key that is not in the table, or whose secret differs, is UNKNOWN_KEY without a user."""
    from authorizer.keys import _checksum, generate_key

    key_id, secret = new_key(aws)
    _, stranger = generate_key()
    forged_body = secret[:16] + stranger[16:-8]
    forged = forged_body + _checksum(forged_body)  # our id, another secret, a valid checksum
    authorizer = make(aws, clock)
    for presented in (stranger, forged):
        assert authorizer.handle(rest_event({"x-api-key": presented}))["context"]["reason"] == "UNKNOWN_KEY"
    events = sent_events(aws, authorizer)
    assert events == [expected_event("API_AUTH_FAILED", "UNKNOWN_KEY")] * 2
    assert key_id not in str(events)


def test_revoked_key_is_denied_after_the_cache_ttl(aws: Aws, clock: FakeClock) -> None:
    """Revocation takes effect once the cached record expires; the event names the key's owner."""
    key_id, secret = new_key(aws)
    authorizer = make(aws, clock)
    event = rest_event({"x-api-key": secret})
    assert authorizer.handle(event)["context"]["outcome"] == "ALLOWED"
    revoke_key(aws.dynamodb, KEYS_TABLE, key_id)
    clock.advance(SETTINGS.key_cache_ttl_seconds)
    response = authorizer.handle(event)
    assert response["context"]["reason"] == "REVOKED_KEY"
    assert sent_events(aws, authorizer) == [
        expected_event("API_CALL", key_id=key_id, email="ada@example.com"),
        expected_event("API_AUTH_FAILED", "REVOKED_KEY", key_id, "ada@example.com"),
    ]


def test_second_limit_denies_then_recovers(aws: Aws, clock: FakeClock) -> None:
    """The 6th request of a second on the free plan is API_RATE_LIMITED; the next second is allowed."""
    key_id, secret = new_key(aws)
    authorizer = make(aws, clock)
    event = rest_event({"x-api-key": secret})
    outcomes = [authorizer.handle(event)["context"] for _ in range(7)]
    assert [c["outcome"] for c in outcomes] == ["ALLOWED"] * 5 + ["RATE_LIMITED"] * 2
    assert outcomes[5]["reason"] == "RATE_LIMIT_SECOND" and outcomes[5]["retryAfter"] == 1
    assert (
        sent_events(aws, authorizer)
        == [expected_event("API_CALL", key_id=key_id, email="ada@example.com")] * 5
        + [expected_event("API_RATE_LIMITED", "RATE_LIMIT_SECOND", key_id, "ada@example.com")] * 2
    )
    clock.advance(1)
    assert authorizer.handle(event)["context"]["outcome"] == "ALLOWED"


def test_minute_limit(aws: Aws, clock: FakeClock) -> None:
    """Past 100 requests in a minute the free plan is refused with RATE_LIMIT_MINUTE until the minute ends."""
    _, secret = new_key(aws)
    authorizer = make(aws, clock)
    event = rest_event({"x-api-key": secret})
    clock.now = 1_794_999_980.0  # 20 s into a minute
    for _ in range(20):
        assert all(authorizer.handle(event)["context"]["outcome"] == "ALLOWED" for _ in range(5))
        clock.advance(1)
    context = authorizer.handle(event)["context"]
    assert (context["reason"], context["retryAfter"]) == ("RATE_LIMIT_MINUTE", 20)
    clock.advance(20)
    assert authorizer.handle(event)["context"]["outcome"] == "ALLOWED"


def test_refusals_are_remembered_locally(aws: Aws, clock: FakeClock) -> None:
    """Within a full window, later refusals cost no DynamoDB write."""
    _, secret = new_key(aws)
    authorizer = make(aws, clock)
    updates = count_calls(aws.dynamodb, "UpdateItem")
    for _ in range(20):
        authorizer.handle(rest_event({"x-api-key": secret}))
    assert updates[0] == 5 + 1 + 1  # 5 counted, 1 refused by DynamoDB, 1 last-used write


def test_unknown_ids_are_negatively_cached(aws: Aws, clock: FakeClock) -> None:
    """Repeating an unknown key reads DynamoDB once and no more; known keys are read once per TTL."""
    from authorizer.keys import generate_key

    _, stranger = generate_key()
    _, secret = new_key(aws, plan="enterprise")
    authorizer = make(aws, clock)
    reads = count_calls(aws.dynamodb, "GetItem")
    for _ in range(50):
        authorizer.handle(rest_event({"x-api-key": stranger}))
        authorizer.handle(rest_event({"x-api-key": secret}))
    assert reads[0] == 1 + 1


def test_a_key_created_a_moment_ago_is_allowed(aws: Aws, clock: FakeClock) -> None:
    """Lookups are strongly consistent, so a new key is not refused (and negatively cached) while
    replicas catch up."""
    _, secret = new_key(aws)
    replica = StaleReplica(aws.dynamodb)
    authorizer = Authorizer(SETTINGS, dynamodb=replica, kinesis=aws.kinesis, clock=clock)
    assert authorizer.handle(rest_event({"x-api-key": secret}))["context"]["outcome"] == "ALLOWED"
    assert authorizer.handle(rest_event({"x-api-key": secret}))["context"]["outcome"] == "ALLOWED"
    assert replica.consistent_reads == [True]  # then cached


@pytest.mark.parametrize(
    "method_arn",
    [
        None,
        "",
        "arn:aws:execute-api:" + "a" * 3000,
        "arn:aws:\u00e9",
        "*",
        "arn:aws:execute-api:*:*:*",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/*/*/*",
        "arn:aws:execute-api:us-east-1:*:abc123/prod/GET/items/42",
        "arn:aws:execute-api:us-east-1:123456789012:*/prod/GET/items/42",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/*/GET/items/42",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/items/42",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items/*",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items/4?",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/FETCH/items/42",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/$other/GET/items/42",
        "arn:aws:execute-api:us-east-1:123456789012:abc123/$default*/GET/items/42",
        "arn:aws:s3:::bucket/prod/GET/items/42",
    ],
)
def test_rest_request_without_one_exact_method_arn_is_refused(
    aws: Aws, clock: FakeClock, method_arn: str | None
) -> None:
    """A valid key never gets an Allow beyond one method: any ARN with a wildcard, or not an
    execute-api method ARN, is MALFORMED_REQUEST (no key is even looked up)."""
    _, secret = new_key(aws)
    authorizer = make(aws, clock)
    reads = count_calls(aws.dynamodb, "GetItem")
    response = authorizer.handle(rest_event({"x-api-key": secret}, methodArn=method_arn))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert response["context"] == {"outcome": "AUTH_FAILED", "reason": "MALFORMED_REQUEST"}
    assert reads[0] == 0
    assert sent_events(aws, authorizer) == [expected_event("API_AUTH_FAILED", "MALFORMED_REQUEST")]


def test_blank_api_key_header_does_not_hide_a_bearer_token(aws: Aws, clock: FakeClock) -> None:
    """An empty or non-string `x-api-key` falls back to `Authorization: Bearer`."""
    _, secret = new_key(aws, plan="pro")
    authorizer = make(aws, clock)
    for blank in ["", "  ", None, 42]:
        event = rest_event({"x-api-key": blank, "Authorization": f"Bearer {secret}"})
        assert authorizer.handle(event)["context"]["outcome"] == "ALLOWED"


def test_http_api_payload_1_0_on_the_default_stage_is_allowed(aws: Aws, clock: FakeClock) -> None:
    """An HTTP API's 1.0 authorizer event (powertools' sample) on the `$default` stage: a valid key
    gets an Allow naming that very methodArn."""
    key_id, secret = new_key(aws)
    event = sample("apiGatewayAuthorizerRequestEvent")
    event["methodArn"] = event["methodArn"].replace("/test/", "/$default/")
    event["requestContext"]["stage"] = "$default"
    event["headers"]["x-api-key"] = secret
    assert event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:abcdef123/$default/GET/request"
    response = make(aws, clock).handle(event)
    assert response["context"]["outcome"] == "ALLOWED" and response["principalId"] == key_id
    assert response["policyDocument"]["Statement"][0]["Resource"] == event["methodArn"]


@pytest.mark.parametrize("broken", ["emit", "flush"])
def test_a_failing_producer_costs_the_event_not_the_answer(
    aws: Aws, clock: FakeClock, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    """Whatever the producer raises is counted as failed and logged by type only, never raised."""
    _, secret = new_key(aws)
    authorizer = Authorizer(
        replace(SETTINGS, flush_on_return_ms=10),
        dynamodb=aws.dynamodb,
        clock=clock,
        producer=BrokenProducer(broken),
    )
    assert authorizer.handle(rest_event({"x-api-key": secret}))["context"]["outcome"] == "ALLOWED"
    assert authorizer.producer_stats().failed == 1
    assert "usage event not emitted: error=RuntimeError" in caplog.text
    assert "ada@example.com" not in caplog.text and secret not in caplog.text


def test_negative_cache_is_bounded(aws: Aws, clock: FakeClock) -> None:
    """A flood of distinct unknown keys cannot grow the negative cache past its size."""
    from authorizer.keys import generate_key

    authorizer = make(
        aws,
        clock,
        AuthorizerSettings(api_keys_table=KEYS_TABLE, rate_limit_table=LIMITS_TABLE, negative_cache_size=10),
    )
    for _ in range(30):
        authorizer.handle(rest_event({"x-api-key": generate_key()[1]}))
    assert len(authorizer._unknown) == 10


def test_key_store_outage_is_a_clean_deny(aws: Aws, clock: FakeClock) -> None:
    """When the keys table cannot be read the request is denied as KEY_STORE_UNAVAILABLE, not crashed."""
    _, secret = new_key(aws)
    settings = AuthorizerSettings(
        stream_name=STREAM, api_keys_table="missing", rate_limit_table=LIMITS_TABLE, analytics_enabled=True
    )
    authorizer = make(aws, clock, settings)
    response = authorizer.handle(rest_event({"x-api-key": secret}))
    assert response["context"] == {"outcome": "UNAVAILABLE", "reason": "KEY_STORE_UNAVAILABLE"}
    [event] = sent_events(aws, authorizer)
    assert (event["eventType"], event["reason"]) == ("API_AUTH_FAILED", "KEY_STORE_UNAVAILABLE")


class FailingRateLimits:
    """DynamoDB whose rate-limit updates fail with `code`; every other call goes through."""

    def __init__(self, client: Any, code: str) -> None:
        self._client, self._code = client, code

    def update_item(self, **request: Any) -> Any:
        if request["TableName"] == LIMITS_TABLE:
            raise ClientError({"Error": {"Code": self._code}}, "UpdateItem")
        return self._client.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalServerError", "ServiceUnavailable"])
def test_a_rate_limit_outage_fails_open_and_is_counted(aws: Aws, clock: FakeClock, code: str) -> None:
    """A transient failure of the rate-limit table allows the request, metered and counted."""
    _, secret = new_key(aws)
    authorizer = Authorizer(
        SETTINGS, dynamodb=FailingRateLimits(aws.dynamodb, code), kinesis=aws.kinesis, clock=clock
    )
    for _ in range(3):
        assert authorizer.handle(rest_event({"x-api-key": secret}))["context"]["outcome"] == "ALLOWED"
    assert [e["eventType"] for e in sent_events(aws, authorizer)] == ["API_CALL"] * 3
    assert isinstance(authorizer.metrics, Tally) and authorizer.metrics.counts[RATE_LIMIT_FAIL_OPEN.name] == 3


@pytest.mark.parametrize(
    "code", ["ResourceNotFoundException", "AccessDeniedException", "ValidationException"]
)
def test_a_misconfigured_rate_limit_table_fails_closed(
    aws: Aws, clock: FakeClock, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing table or an IAM drift after cold start refuses requests instead of lifting limits."""
    _, secret = new_key(aws)
    authorizer = Authorizer(
        SETTINGS, dynamodb=FailingRateLimits(aws.dynamodb, code), kinesis=aws.kinesis, clock=clock
    )
    decision = authorizer.decide(parse_request(rest_event({"x-api-key": secret})))
    assert (decision.outcome, decision.reason) == (Outcome.UNAVAILABLE, Reason.RATE_LIMIT_MISCONFIGURED)
    monkeypatch.setattr(handler_module, "_instance", authorizer)
    with pytest.raises(KeyStoreUnavailable, match="RATE_LIMIT_MISCONFIGURED"):  # a 500, never an Allow
        handler_module.lambda_handler(rest_event({"x-api-key": secret}), None)
    assert [e["eventType"] for e in sent_events(aws, authorizer)] == ["API_AUTH_FAILED"]


def test_a_missing_rate_limit_table_stops_the_cold_start(aws: Aws, clock: FakeClock) -> None:
    """RATE_LIMIT_TABLE_NAME naming no table is fatal at cold start, naming the variable."""
    settings = AuthorizerSettings(api_keys_table=KEYS_TABLE, rate_limit_table="no-such-table")
    authorizer = Authorizer(settings, dynamodb=aws.dynamodb, clock=clock)
    with pytest.raises(ConfigError, match="RATE_LIMIT_TABLE_NAME='no-such-table'"):
        authorizer.check_configuration()
    make(aws, clock).check_configuration()  # the real table passes


def test_all_of_a_users_keys_share_one_allowance(aws: Aws, clock: FakeClock) -> None:
    """Two keys of one user on the free plan (5/s) get 5 calls in a second between them, not 10."""
    secrets = [new_key(aws, email="ada@example.com")[1], new_key(aws, email="Ada@Example.com")[1]]
    authorizer = make(aws, clock)
    outcomes = [
        authorizer.handle(rest_event({"x-api-key": secrets[i % 2]}))["context"]["outcome"] for i in range(10)
    ]
    assert outcomes.count("ALLOWED") == 5 and outcomes.count("RATE_LIMITED") == 5


def test_http_v2_payload(aws: Aws, clock: FakeClock) -> None:
    """HTTP API v2 requests get simple responses and events with the route template."""
    _, secret = new_key(aws)
    authorizer = make(aws, clock)
    assert authorizer.handle(http_v2_event({"authorization": f"Bearer {secret}"}))["isAuthorized"] is True
    assert authorizer.handle(http_v2_event({}))["isAuthorized"] is False
    events = sent_events(aws, authorizer)
    assert [(e["eventType"], e["resourcePath"], e["sourceIp"]) for e in events] == [
        ("API_CALL", "/items/{id}", "198.51.100.7"),
        ("API_AUTH_FAILED", "/items/{id}", "198.51.100.7"),
    ]


def test_analytics_off_creates_no_kinesis_client(
    aws: Aws, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ENABLE_KINESIS_ANALYTICS off no Kinesis client is built and nothing is sent."""

    def forbidden() -> None:
        raise AssertionError("Kinesis client built")

    monkeypatch.setattr(service_module, "kinesis_client", forbidden)
    _, secret = new_key(aws)
    authorizer = Authorizer(
        AuthorizerSettings(api_keys_table=KEYS_TABLE, rate_limit_table=LIMITS_TABLE),
        dynamodb=aws.dynamodb,
        clock=clock,
    )
    assert isinstance(authorizer.producer, NullProducer)
    assert authorizer.handle(rest_event({"x-api-key": secret}))["context"]["outcome"] == "ALLOWED"
    assert aws.read_stream() == []


def test_keys_never_reach_the_logs(aws: Aws, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the outcome, neither the presented key nor its hash is logged."""
    from authorizer.keys import generate_key, hash_key

    _, secret = new_key(aws)
    revoked_id, revoked = new_key(aws)
    revoke_key(aws.dynamodb, KEYS_TABLE, revoked_id)
    presented = [secret, revoked, generate_key()[1], "garbage-key", secret + "x"]
    authorizer = make(aws, clock)
    with caplog.at_level(logging.DEBUG):  # botocore's wire logs included
        for key in presented * 3:
            authorizer.handle(rest_event({"x-api-key": key}))
        authorizer.producer.flush(5)
    ours = "".join(r.getMessage() for r in caplog.records if r.name.startswith("authorizer"))
    everything = caplog.text + str(aws.read_stream())
    assert "denied" in ours
    for key in presented:
        assert key not in everything and hash_key(key) not in ours


class TestLambdaHandler:
    """The module-level entry point, configured from the environment."""

    @pytest.fixture(autouse=True)
    def environment(self, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Any:
        monkeypatch.setenv("ENVIRONMENT", "test")
        monkeypatch.setenv("ENABLE_KINESIS_ANALYTICS", "true")
        # the lazily built instance gets a fake clock, so rate-limit windows do not depend on timing
        monkeypatch.setattr(handler_module, "Authorizer", functools.partial(Authorizer, clock=FakeClock()))
        handler_module.reset()
        yield
        handler_module.reset()

    def test_rest_answers_follow_the_api_gateway_protocol(self, aws: Aws) -> None:
        """Allow returns a policy, key failures raise Unauthorized (401), rate limits return a Deny (429)."""
        _, secret = new_key(aws)
        assert (
            handler_module.lambda_handler(rest_event({"x-api-key": secret}), None)["context"]["plan"]
            == "free"
        )
        with pytest.raises(Unauthorized, match=r"^Unauthorized$"):
            handler_module.lambda_handler(rest_event({}), None)
        for _ in range(10):
            response = handler_module.lambda_handler(rest_event({"x-api-key": secret}), None)
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"

    def test_drain_waits_until_events_are_sent(self, aws: Aws) -> None:
        """After drain(), every emitted event is in the stream and counted as sent."""
        _, secret = new_key(aws, plan="enterprise")
        for _ in range(300):
            handler_module.lambda_handler(http_v2_event({"x-api-key": secret}), None)
        handler_module.drain(10)
        stats = handler_module.producer_stats()
        assert (stats.sent, stats.failed, stats.dropped, stats.pending) == (300, 0, 0, 0)
        assert len(aws.read_stream()) == 300

    def test_the_instance_is_built_once(self, aws: Aws) -> None:
        """Lambda container reuse: one authorizer, one set of clients."""
        assert handler_module.get_authorizer() is handler_module.get_authorizer()
