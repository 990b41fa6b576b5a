"""The DynamoDB sink against moto: a claim fences the shard's previous claimant.

A lease taken from a worker still writing (a DynamoDB outage stops its renewals, not its flush)
leaves two record processors on one shard. The newer claim must see the older one's recorded
range, or refuse the older one's next range, so both apply identically cut ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import orjson
import pytest
from moto import mock_aws

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.errors import Superseded
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


def _batch(start: int | None, end: int) -> Batch:
    aggregate = Aggregate()
    first = 0 if start is None else start
    for _ in range(end - first):
        aggregate.add(decode_event(orjson.dumps(event(email="ada@example.com", at=NOW)), NOW))
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
