"""The DynamoDB sink against moto: claims, bounded writes, and firstSeen/lastSeen.

A lease taken from a worker still writing (a DynamoDB outage stops its renewals, not its flush)
leaves two record processors on one shard. The newer claim must see the older one's recorded
range, or refuse the older one's next range, so both apply identically cut ranges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.errors import SinkUnavailable, Superseded
from consumer.sinks.dynamodb import DynamoDBSink, analytics_table_spec, read_counters
from tests.factories import event

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
        aggregate.add(decode_event(orjson.dumps(event(email="ada@example.com", at=at)), NOW))
    start_key = None if start is None else Position(str(start)).key()
    return Batch(FlushRange(SHARD, start_key, Position(str(end)).key()), aggregate, end - first)


def _calls(dynamodb: Any) -> int:
    return read_counters(dynamodb.get_item(TableName=TABLE, Key=TOTAL)["Item"])["calls"]


def test_a_new_claim_sees_the_last_range_and_refuses_the_old_claimant(dynamodb: Any) -> None:
    old, new = DynamoDBSink(dynamodb, TABLE, "app"), DynamoDBSink(dynamodb, TABLE, "app")
    assert old.claim(SHARD) is None
    old.write(_batch(None, 5))
    assert new.claim(SHARD) == FlushRange(SHARD, None, Position("5").key())
    with pytest.raises(Superseded):
        old.write(_batch(5, 9))  # its next range is refused before any counter moves
    assert _calls(dynamodb) == 5
    new.write(_batch(None, 5))  # the replay of the range it saw: skipped per item
    new.write(_batch(5, 9))
    assert _calls(dynamodb) == 9


def test_an_old_claimant_retrying_a_recorded_range_is_refused_too(dynamodb: Any) -> None:
    """The old processor was riding out an outage inside its write: its retry stops at the fence."""
    old, new = DynamoDBSink(dynamodb, TABLE, "app"), DynamoDBSink(dynamodb, TABLE, "app")
    old.claim(SHARD)
    new.claim(SHARD)
    with pytest.raises(Superseded):
        old.write(_batch(None, 5))
    assert dynamodb.get_item(TableName=TABLE, Key=TOTAL).get("Item") is None


def _seen(dynamodb: Any) -> tuple[str, str]:
    item = dynamodb.get_item(TableName=TABLE, Key=TOTAL)["Item"]
    return item["firstSeen"]["S"], item["lastSeen"]["S"]


def test_first_and_last_seen_only_widen_whatever_order_events_arrive_in(dynamodb: Any) -> None:
    """A later flush holding earlier events moves firstSeen back and leaves lastSeen alone."""
    sink, minute = DynamoDBSink(dynamodb, TABLE, "app"), timedelta(minutes=1)
    sink.claim(SHARD)
    sink.write(_batch(None, 2))
    sink.write(_batch(2, 4, at=NOW - minute))  # out of order: earlier than what was written
    assert _seen(dynamodb) == ("2026-11-25T11:59:00.000Z", "2026-11-25T12:00:00.000Z")
    sink.write(_batch(4, 6, at=NOW + minute))
    sink.write(_batch(4, 6, at=NOW + minute))  # a replay: skipped whole
    assert _seen(dynamodb) == ("2026-11-25T11:59:00.000Z", "2026-11-25T12:01:00.000Z")
    assert _calls(dynamodb) == 6


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
