"""Access logs locally, as in AWS: `metering provision` subscribes the access-log group to the stream,
`metering simulate` writes a line per request through CloudWatch Logs, and the emulator's
subscription delivers them to the stream as gzip envelopes the consumer decodes.

Emulator only (no consumer daemon): the records on the stream are read and decoded directly.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from consumer.core.access_logs import ResponseEvent, decode_log_record, is_gzip
from consumer.core.events import UsageEvent
from consumer.settings import ConsumerSettings
from contract.access_logs import SUBSCRIPTION_FILTER
from contract.environment import access_log_group
from contract.events import EventType
from metering.commands.provision import provision
from metering.commands.simulate import ROUTES, Summary, simulate
from tests.records import usage_events

# Usage event type -> the statuses API Gateway answers for it.
STATUS_OF = {EventType.API_AUTH_FAILED: {401}, EventType.API_RATE_LIMITED: {429}}


@pytest.fixture
def settings(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ConsumerSettings:
    """An environment of this test's own in the shared emulator."""
    environment = f"al-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ENVIRONMENT", environment)
    for name, value in {
        "ENABLE_KINESIS_ANALYTICS": "true",  # simulate sets defaults for these: restore them afterwards
        "KINESIS_READ_TIMEOUT_SECONDS": "2",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return ConsumerSettings.from_env(aws_env | {"ENVIRONMENT": environment})


@pytest.fixture
def run(settings: ConsumerSettings) -> tuple[Summary, list[bytes]]:
    provision(settings, report=lambda _: None)
    provision(settings, report=lambda _: None)  # idempotent: the group and its filter stay one
    summary = simulate(settings, rate=60, duration=3, users=4, seed=11)
    return summary, _records(settings.stream_name)


def _records(stream: str) -> list[bytes]:
    kinesis = boto3.client("kinesis")
    data: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            data += [record["Data"] for record in reply["Records"]]
            iterator = reply.get("NextShardIterator")
            if not reply["Records"] or iterator is None:
                break
    return data


def _responses(records: list[bytes]) -> list[ResponseEvent]:
    found: list[ResponseEvent] = []
    for data in records:
        record = decode_log_record(data, datetime.now(UTC))
        assert not record.is_control
        for _, event in record.events:
            assert isinstance(event, ResponseEvent), event
            found.append(event)
    return found


def test_the_group_is_subscribed_to_the_stream_once(settings: ConsumerSettings) -> None:
    provision(settings, report=lambda _: None)
    provision(settings, report=lambda _: None)
    logs = boto3.client("logs")
    group = access_log_group(settings.environment)
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]] == [
        group
    ]
    (subscription,) = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
    assert subscription["filterName"] == SUBSCRIPTION_FILTER
    assert subscription["destinationArn"].endswith(f":stream/{settings.stream_name}")


def test_every_simulated_request_reaches_the_stream_as_one_decodable_access_log_line(
    run: tuple[Summary, list[bytes]], settings: ConsumerSettings
) -> None:
    summary, records = run
    subscription = [data for data in records if is_gzip(data)]
    responses = _responses(subscription)
    requests = sum(summary.outcomes.values())
    assert summary.log_lines == len(responses) == requests > 100
    assert summary.log_lines_failed == 0
    assert len({r.request_id for r in responses}) == requests
    # Batched, as API Gateway delivers them: far fewer PutLogEvents (one record each) than lines.
    assert len(subscription) < requests / 10
    envelope: dict[str, Any] = json.loads(gzip.decompress(subscription[0]))
    assert envelope["logGroup"] == access_log_group(settings.environment)
    assert envelope["subscriptionFilters"] == [SUBSCRIPTION_FILTER]


def test_the_lines_carry_the_authorizers_decision_and_realistic_latencies(
    run: tuple[Summary, list[bytes]],
) -> None:
    summary, records = run
    usage: dict[str | None, UsageEvent] = {
        event.request_id: event
        for data in records
        if not is_gzip(data)
        for event in usage_events(data, datetime.now(UTC))
    }
    responses = _responses([data for data in records if is_gzip(data)])
    assert {r.request_id for r in responses} == set(usage)  # the same requests, seen twice
    routes = {(route.method, route.resource) for route in ROUTES}
    for response in responses:
        event = usage[response.request_id]
        assert (response.http_method, response.resource_path) in routes
        assert response.path == event.path  # the stage stripped from $context.path
        assert response.source_ip == event.source_ip
        assert response.user_email == event.user_email and response.api_key_id == event.api_key_id
        assert response.response_latency_ms is not None  # simulate always writes one
        if event.event_type == EventType.API_CALL:
            assert response.status not in {401, 429}
            assert response.integration_latency_ms is not None
            assert 0 < response.integration_latency_ms < response.response_latency_ms
        else:
            assert response.status in STATUS_OF[event.event_type]
            assert response.integration_latency_ms is None and response.response_latency_ms > 0
    statuses = {response.status for response in responses}
    assert {200, 401} <= statuses, statuses
    assert summary.outcomes["allowed"] == sum(1 for e in usage.values() if e.event_type == EventType.API_CALL)
