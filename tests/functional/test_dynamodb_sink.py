"""What only the DynamoDB sink has to get right: bounded writes in an outage, stores that return no
item with a refused condition. The cases every sink shares are in test_sink_contract.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from consumer.core.access_logs import decode_access_log_line
from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.errors import SinkUnavailable
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.testing import access_log_line, event
from contract.table import analytics_table_spec, read_counters

TABLE = "analytics"
SHARD = "shardId-000000000000"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
TOTAL = {"pk": {"S": "USER#ada@example.com"}, "sk": {"S": "TOTAL"}}


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**analytics_table_spec(TABLE))
        yield client


def _batch(start: int | None, end: int, at: datetime = NOW) -> Batch:
    aggregate = Aggregate()
    first = 0 if start is None else start
    for _ in range(end - first):
        data = orjson.dumps(event(email="ada@example.com", at=at))
        aggregate.add(decode_event(data, NOW), data)
    start_key = None if start is None else Position(str(start)).key()
    return Batch(FlushRange(SHARD, start_key, Position(str(end)).key()), aggregate, end - first)


def _calls(dynamodb: Any) -> int:
    return read_counters(dynamodb.get_item(TableName=TABLE, Key=TOTAL)["Item"])["calls"]


class _StalledTable:
    """The first item update fails at once; every other one hangs until released (an outage)."""

    def __init__(self, client: Any) -> None:
        self._client, self._failed = client, False
        self.release = threading.Event()

    def update_item(self, **request: Any) -> Any:
        if request["Key"]["pk"]["S"].startswith("FLUSH#"):
            return self._client.update_item(**request)
        if not self._failed:
            self._failed = True
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "UpdateItem")
        self.release.wait(10)
        return self._client.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_write_attempt_ends_at_its_first_failed_update(dynamodb: Any) -> None:
    """In an outage the write gives up on time instead of waiting out every queued update."""
    table = _StalledTable(dynamodb)
    sink = DynamoDBSink(table, TABLE, "app", concurrency=2, retry_for=0)
    sink.claim(SHARD)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable):
        sink.write(_batch(None, 3))
    assert time.monotonic() - started < 5
    table.release.set()
    sink.close()


class _NoItemOnRefusal:
    """A DynamoDB-compatible store that returns no item with a refused condition."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def update_item(self, **request: Any) -> Any:
        try:
            return self._client.update_item(**request)
        except ClientError as exc:
            exc.response.pop("Item", None)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_replay_is_skipped_where_refusals_come_without_the_item(dynamodb: Any) -> None:
    """The item is then read back to tell an applied range from a firstSeen/lastSeen refusal."""
    sink = DynamoDBSink(_NoItemOnRefusal(dynamodb), TABLE, "app", retry_for=0)
    sink.claim(SHARD)
    sink.write(_batch(None, 3))
    sink.write(_batch(None, 3))
    assert _calls(dynamodb) == 3


class _ExpressionLimits:
    """DynamoDB's own limits on one UpdateItem: 4 KB per expression, 300 operators (about one per
    clause here); the emulator does not enforce them. Crashes once after `crash_after` part updates."""

    def __init__(self, client: Any, crash_after: int | None = None) -> None:
        self._client, self._crash_after, self.updates = client, crash_after, 0

    def update_item(self, **request: Any) -> Any:
        expression = request.get("UpdateExpression", "")
        assert len(expression.encode()) <= 4096 and expression.count(":v") <= 300, "over DynamoDB's limits"
        self.updates += 1
        if self._crash_after is not None and self.updates > self._crash_after:
            self._crash_after = None
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "UpdateItem")
        return self._client.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _wide_latencies(count: int) -> Batch:
    """Responses of one endpoint and minute whose latencies fill hundreds of histogram buckets."""
    aggregate = Aggregate()
    for n in range(count):
        line = access_log_line(NOW, responseLatency=str(1 + n * 37), integrationLatency=str(1 + n * 23))
        aggregate.add_response(decode_access_log_line(orjson.dumps(line), NOW))
    return Batch(FlushRange(SHARD, None, Position("1").key()), aggregate, 1)


def test_an_item_with_hundreds_of_counters_is_written_in_parts_each_exactly_once(dynamodb: Any) -> None:
    """One update over DynamoDB's expression limits would be refused at every replay and stop the
    shard; its parts, each with its own watermark, stay exact through a crash between them."""
    batch = _wide_latencies(600)
    endpoint_hour = next(k for k in batch.aggregate.items if k[0].startswith("ENDPOINT#") and "HOUR#" in k[1])
    assert len(batch.aggregate.items[endpoint_hour].adds) > 300  # one update could not hold them
    limited = _ExpressionLimits(dynamodb, crash_after=5)
    sink = DynamoDBSink(limited, TABLE, "app", concurrency=1, retry_for=0)
    sink.claim(SHARD)
    with pytest.raises(SinkUnavailable):
        sink.write(batch)  # crashed between two parts of one item
    sink.write(batch)  # the replay
    sink.write(batch)  # and another
    item = dynamodb.get_item(
        TableName=TABLE, Key={"pk": {"S": endpoint_hour[0]}, "sk": {"S": endpoint_hour[1]}}
    )["Item"]
    counters = {name: int(value["N"]) for name, value in item.items() if "N" in value and name != "expiresAt"}
    assert counters == batch.aggregate.items[endpoint_hour].adds
