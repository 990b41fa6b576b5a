"""Shared fixtures: moto in-process, a fake clock, event builders, a stream reader, dead endpoints."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from authorizer.events import partition_key
from authorizer.keystore import create_key
from authorizer.producer import KinesisProducer
from authorizer.tables import table_specs, ttl_specs
from consumer.testing import FakeClock
from tests.records import record_events

KEYS_TABLE = "complical-api-keys-test"
LIMITS_TABLE = "complical-rate-limits-test"
STREAM = "complical-usage-stream-test"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items/42"
START = 1_795_000_000.25  # a fixed instant: 2026-11-18T11:06:40.250Z, 40.25 s into its minute


@dataclass
class Aws:
    dynamodb: Any
    kinesis: Any

    def read_stream(self, stream: str = STREAM) -> list[dict[str, Any]]:
        """Every event on the stream, with the partition key it is sent by (`partitionKey`).

        A batch record goes under its first event's key, and each of its events belongs to the
        shard that holds it: each event's own key hashes into that shard's range, as a record of
        its own would have."""
        events: list[dict[str, Any]] = []
        for shard in self.kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            span = range(
                int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"]) + 1
            )
            for record in self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
                batch = [{"partitionKey": partition_key(e), **e} for e in record_events(record["Data"])]
                assert record["PartitionKey"] == batch[0]["partitionKey"]
                assert all(_hashed(event["partitionKey"]) in span for event in batch)
                events += batch
        return events


def _hashed(partition_key: str) -> int:
    return int(hashlib.md5(partition_key.encode()).hexdigest(), 16)


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    producers: list[KinesisProducer] = []
    start = KinesisProducer.__init__

    def tracked(self: KinesisProducer, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        producers.append(self)

    monkeypatch.setattr(KinesisProducer, "__init__", tracked)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        kinesis = boto3.client("kinesis")
        for spec in table_specs(KEYS_TABLE, LIMITS_TABLE):
            dynamodb.create_table(**spec)
        for spec in ttl_specs(KEYS_TABLE, LIMITS_TABLE):
            dynamodb.update_time_to_live(**spec)
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        yield Aws(dynamodb, kinesis)
        # A sender still lingering would put this test's events into the next test's stream.
        for producer in producers:
            producer.close(5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def closed_port() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def count_calls(client: Any, operation: str, stage: str = "before-call") -> list[int]:
    """Counts a DynamoDB operation's calls; with stage "before-send", each attempt on the wire."""
    calls = [0]

    def hook(**_: Any) -> None:
        calls[0] += 1

    client.meta.events.register(f"{stage}.dynamodb.{operation}", hook)
    return calls


def new_key(aws: Aws, email: str = "ada@example.com", plan: str = "free") -> tuple[str, str]:
    return create_key(aws.dynamodb, KEYS_TABLE, email, plan, FakeClock(START))


def rest_event(headers: Any = None, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/items/{id}",
        "path": "/items/42",
        "httpMethod": "GET",
        "headers": headers if headers is not None else {},
        "requestContext": {
            "requestId": "req-1",
            "resourcePath": "/items/{id}",
            "httpMethod": "GET",
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "curl/8.5"},
        },
    }
    event.update(overrides)
    return event


def http_v2_event(headers: Any = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items/42",
        "routeKey": "GET /items/{id}",
        "rawPath": "/items/42",
        "headers": headers if headers is not None else {},
        "requestContext": {
            "requestId": "req-2",
            "routeKey": "GET /items/{id}",
            "http": {"method": "GET", "path": "/items/42", "sourceIp": "198.51.100.7", "userAgent": "ua/1"},
        },
    }
