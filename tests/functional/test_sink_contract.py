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

from consumer.core.aggregate import MEMBER_CAP, Aggregate
from consumer.core.archive import unpack
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.errors import SinkUnavailable, Superseded
from consumer.sinks.base import CounterSink
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.sinks.memory import MemorySink, MemoryStore
from consumer.testing import event
from contract.table import analytics_table_spec

SHARD = "shardId-000000000000"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
TOTAL = ("USER#ada@example.com", "TOTAL")


@dataclass
class Table:
    """Sinks on one store, and what the store holds."""

    new_sink: Callable[..., CounterSink]  # fail_after_items=N: an attempt fails after N item updates
    item: Callable[[tuple[str, str]], dict[str, Any]]  # counters, firstSeen, lastSeen of an item
    pages: Callable[[], dict[tuple[str, str], bytes]]  # every archive page


def _memory() -> Table:
    store = MemoryStore()

    def item(key: tuple[str, str]) -> dict[str, Any]:
        return dict(store.items.get(key, {}))

    return Table(
        lambda fail_after_items=None: MemorySink(store, fail_after_items=fail_after_items),
        item,
        lambda: store.pages,
    )


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
        values = {k: v.get("S", v.get("N", v.get("SS"))) for k, v in found.items()}
        return {
            k: int(v) if isinstance(v, str) and v.isdigit() and k != "sk" else v for k, v in values.items()
        }

    def pages() -> dict[tuple[str, str], bytes]:
        items = client.scan(TableName=name, ConsistentRead=True)["Items"]
        return {
            (i["pk"]["S"], i["sk"]["S"]): i["data"]["B"] for i in items if i["pk"]["S"].startswith("ARCHIVE#")
        }

    return Table(new_sink, item, pages)


@pytest.fixture(params=["memory", "dynamodb"])
def table(request: pytest.FixtureRequest) -> Table:
    if request.param == "memory":
        return _memory()
    request.getfixturevalue("aws_env")
    return _dynamodb()


def _batch(
    start: int | None, end: int, at: datetime = NOW, emails: list[str] | None = None, **fields: Any
) -> Batch:
    aggregate = Aggregate()
    first = 0 if start is None else start
    for n in range(end - first):
        email = emails[n % len(emails)] if emails else "ada@example.com"
        data = orjson.dumps(event(email=email, ip="192.0.2.1", at=at, **fields))
        aggregate.add(decode_event(data, NOW + timedelta(hours=1)), data)
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


HOUR, DAY, MONTH = ("GLOBAL", "HOUR#2026-11-25T12"), ("GLOBAL", "DAY#2026-11-25"), ("GLOBAL", "MONTH#2026-11")


def test_active_users_count_each_user_once_per_bucket_whatever_the_replays(table: Table) -> None:
    """GLOBAL hour/day/month `activeUsers` counts users with an item of the bucket: replays, and a
    write that died half-way, change nothing."""
    sink = table.new_sink()
    sink.claim(SHARD)
    sink.write(_batch(None, 4, emails=["a@x.io", "b@x.io"]))
    sink.write(_batch(None, 4, emails=["a@x.io", "b@x.io"]))  # a replay
    assert [table.item(key)["activeUsers"] for key in (HOUR, DAY, MONTH)] == [2, 2, 2]
    dying = table.new_sink(fail_after_items=3)
    dying.claim(SHARD)
    with pytest.raises(SinkUnavailable):
        dying.write(_batch(4, 9, emails=["a@x.io", "c@x.io", "d@x.io"]))
    restarted = table.new_sink()
    restarted.claim(SHARD)
    restarted.write(_batch(4, 9, emails=["a@x.io", "c@x.io", "d@x.io"]))
    later = datetime(2026, 11, 25, 13, tzinfo=UTC)
    restarted.write(_batch(9, 10, at=later, emails=["a@x.io"]))
    assert [table.item(key)["activeUsers"] for key in (HOUR, DAY, MONTH)] == [4, 4, 4]
    assert table.item(("GLOBAL", "HOUR#2026-11-25T13"))["activeUsers"] == 1
    assert table.item(("GLOBAL", "MINUTE#2026-11-25T12:00")).get("activeUsers") is None


def test_the_written_items_new_values_come_back_and_a_replay_says_so(table: Table) -> None:
    """What alerts and metrics read: each item's new counters, and whether this write applied them."""
    sink = table.new_sink()
    sink.claim(SHARD)
    first = sink.write(_batch(None, 3))
    assert first[TOTAL].applied and first[TOTAL].values["calls"] == 3
    second = sink.write(_batch(3, 5))
    assert second[("GLOBAL", "MINUTE#2026-11-25T12:00")].values["calls"] == 5
    replayed = sink.write(_batch(3, 5))
    assert not replayed[TOTAL].applied and replayed[TOTAL].values["calls"] == 5


def test_a_bounded_set_stops_growing_and_the_counts_go_on(table: Table) -> None:
    """The keys seen from one IP: at most twice the cap however many flushes add to it."""
    sink = table.new_sink()
    sink.claim(SHARD)
    for n in range(4):
        start = None if n == 0 else Position(str(n)).key()
        batch = Batch(FlushRange(SHARD, start, Position(str(n + 1)).key()), Aggregate(), 60)
        for k in range(60):
            data = orjson.dumps(event("API_AUTH_FAILED", ip="192.0.2.1", apiKeyId=f"k{n:02d}{k:09d}", at=NOW))
            batch.aggregate.add(decode_event(data, NOW + timedelta(hours=1)), data)
        sink.write(batch)
    ip = table.item(("IP#192.0.2.1", "HOUR#2026-11-25T12"))
    assert ip["authFailures"] == 240
    assert MEMBER_CAP <= len(ip["keysTried"]) < 2 * MEMBER_CAP


def test_archive_pages_hold_each_event_once_whatever_the_replays(table: Table) -> None:
    sink = table.new_sink()
    sink.claim(SHARD)
    batch = _batch(None, 3)
    sink.write(batch)
    sink.write(batch)
    pages = table.pages()
    assert list(pages) == [("ARCHIVE#USER#ada@example.com", f"2026-11-25T12#{SHARD}#{batch.range.end}#000")]
    assert [e["eventType"] for e in unpack(next(iter(pages.values())))] == ["API_CALL"] * 3
