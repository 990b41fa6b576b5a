"""One suite, two sinks: `MemorySink` must behave like `DynamoDBSink` (on the shared emulator).

The fast tests drive the record processor against `MemorySink`; these cases make sure what they
prove holds for the real sink too: claims fence older claimants, replays are no-ops per item,
firstSeen/lastSeen only widen, and a write that fails part-way raises `SinkUnavailable` and is
exact once written again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.errors import SinkUnavailable, Superseded
from consumer.sinks.base import CounterSink
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.sinks.memory import MemorySink, MemoryStore
from consumer.testing import event
from contract.table import analytics_table_spec, read_counters

SHARD = "shardId-000000000000"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
TOTAL = ("USER#ada@example.com", "TOTAL")


@dataclass
class Table:
    """Sinks on one store, and what the store holds."""

    new_sink: Callable[..., CounterSink]  # fail_after_items=N: an attempt fails after N item updates
    item: Callable[[tuple[str, str]], dict[str, Any]]  # counters, firstSeen, lastSeen of an item


def _memory() -> Table:
    store = MemoryStore()

    def item(key: tuple[str, str]) -> dict[str, Any]:
        return dict(store.items.get(key, {}))

    return Table(lambda fail_after_items=None: MemorySink(store, fail_after_items=fail_after_items), item)


class _FailingAfter:
    """DynamoDB that fails every counter update after the first `limit` (an outage mid-flush)."""

    def __init__(self, client: Any, limit: int) -> None:
        self._client, self._left = client, limit

    def update_item(self, **request: Any) -> Any:
        if not request["Key"]["pk"]["S"].startswith("FLUSH#"):
            if self._left <= 0:
                raise ClientError({"Error": {"Code": "InternalServerError"}}, "UpdateItem")
            self._left -= 1
        return self._client.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _dynamodb() -> Table:
    client = boto3.client("dynamodb")
    name = f"sink-{uuid.uuid4().hex[:8]}"
    client.create_table(**analytics_table_spec(name))

    def new_sink(fail_after_items: int | None = None) -> CounterSink:
        used = client if fail_after_items is None else _FailingAfter(client, fail_after_items)
        return DynamoDBSink(used, name, "app", retry_for=0, concurrency=1)

    def item(key: tuple[str, str]) -> dict[str, Any]:
        found = client.get_item(
            TableName=name, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}}, ConsistentRead=True
        ).get("Item", {})
        seen = {k: found[k]["S"] for k in ("firstSeen", "lastSeen") if k in found}
        return (read_counters(found) | seen) if found else {}

    return Table(new_sink, item)


@pytest.fixture(params=["memory", "dynamodb"])
def table(request: pytest.FixtureRequest) -> Table:
    if request.param == "memory":
        return _memory()
    request.getfixturevalue("aws_env")
    return _dynamodb()


def _batch(start: int | None, end: int, at: datetime = NOW) -> Batch:
    aggregate = Aggregate()
    first = 0 if start is None else start
    for _ in range(end - first):
        aggregate.add(decode_event(orjson.dumps(event(email="ada@example.com", ip="192.0.2.1", at=at)), NOW))
    start_key = None if start is None else Position(str(start)).key()
    return Batch(FlushRange(SHARD, start_key, Position(str(end)).key()), aggregate, end - first)


def _calls(table: Table, key: tuple[str, str] = TOTAL) -> int:
    return int(table.item(key).get("calls", 0))


def test_a_new_claim_sees_the_last_range_and_fences_the_old_claimant(table: Table) -> None:
    old, new = table.new_sink(), table.new_sink()
    assert old.claim(SHARD) is None
    old.write(_batch(None, 5))
    assert new.claim(SHARD) == FlushRange(SHARD, None, Position("5").key())
    with pytest.raises(Superseded):
        old.write(_batch(5, 9))  # its next range is refused before any counter moves
    assert _calls(table) == 5
    new.write(_batch(None, 5))  # the replay of the range it saw: skipped per item
    new.write(_batch(5, 9))
    assert _calls(table) == 9


def test_an_old_claimant_retrying_a_recorded_range_is_refused_too(table: Table) -> None:
    """The old processor was riding out an outage inside its write: its retry stops at the fence."""
    old, new = table.new_sink(), table.new_sink()
    old.claim(SHARD)
    new.claim(SHARD)
    with pytest.raises(Superseded):
        old.write(_batch(None, 5))
    assert table.item(TOTAL) == {}


def test_a_replayed_range_is_a_no_op_on_every_item(table: Table) -> None:
    sink = table.new_sink()
    sink.claim(SHARD)
    for _ in range(3):
        sink.write(_batch(None, 4))
    sink.write(_batch(4, 6))
    assert (_calls(table), _calls(table, ("GLOBAL", "HOUR#2026-11-25T12"))) == (6, 6)
    assert _calls(table, ("IP#192.0.2.1", "HOUR#2026-11-25T12")) == 6


def test_first_and_last_seen_only_widen_whatever_order_events_arrive_in(table: Table) -> None:
    """A later flush holding earlier events moves firstSeen back and leaves lastSeen alone."""
    sink, minute = table.new_sink(), timedelta(minutes=1)
    sink.claim(SHARD)
    sink.write(_batch(None, 2))
    sink.write(_batch(2, 4, at=NOW - minute))  # out of order: earlier than what was written
    seen = table.item(TOTAL)
    assert (seen["firstSeen"], seen["lastSeen"]) == ("2026-11-25T11:59:00.000Z", "2026-11-25T12:00:00.000Z")
    sink.write(_batch(4, 6, at=NOW + minute))
    sink.write(_batch(4, 6, at=NOW + minute))  # a replay: skipped whole
    seen = table.item(TOTAL)
    assert (seen["firstSeen"], seen["lastSeen"]) == ("2026-11-25T11:59:00.000Z", "2026-11-25T12:01:00.000Z")
    assert _calls(table) == 6


@pytest.mark.parametrize("written", [0, 1, 2])
def test_a_write_failing_part_way_raises_sink_unavailable_and_is_exact_when_written_again(
    table: Table, written: int
) -> None:
    failing = table.new_sink(fail_after_items=written)
    failing.claim(SHARD)
    with pytest.raises(SinkUnavailable):
        failing.write(_batch(None, 3))
    restarted = table.new_sink()
    assert restarted.claim(SHARD) == FlushRange(SHARD, None, Position("3").key())  # the intent was recorded
    restarted.write(_batch(None, 3))
    assert _calls(table) == _calls(table, ("GLOBAL", "MINUTE#2026-11-25T12:00")) == 3


def test_the_first_record_to_claim_an_origin_counts_it_and_only_it(table: Table) -> None:
    """A re-driven origin belongs to the first record that claims it, across sinks and replays."""
    first, second = table.new_sink(), table.new_sink()
    origin, expires = "shardId-000000000000/42/0", 2_000_000_000
    assert first.claim_origin(origin, "shardId-000000000001/00278.0", expires)
    assert second.claim_origin(origin, "shardId-000000000001/00278.0", expires)  # that record, replayed
    assert not second.claim_origin(origin, "shardId-000000000002/00211.0", expires)  # another copy
    assert not first.claim_origin(origin, "shardId-000000000002/00211.0", expires)
    assert second.claim_origin("shardId-000000000000/43/0", "shardId-000000000002/00211.0", expires)
