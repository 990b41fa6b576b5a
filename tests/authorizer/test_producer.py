"""Tests of the fire-and-forget producer: counting, bounding, and dead endpoints."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from authorizer.clients import kinesis_client
from authorizer.decision import Caller, Decision, Outcome
from authorizer.events import build_event, partition_key
from authorizer.producer import BATCH_EVENTS, MAP_REFRESH_SECONDS, KinesisProducer
from authorizer.request import parse_request
from authorizer.settings import AuthorizerSettings
from consumer.testing import FakeClock
from contract.batch import MAX_BATCH_BYTES
from contract.events import UsageEventV1
from tests.authorizer.conftest import closed_port, rest_event
from tests.records import record_events

EVENT: UsageEventV1 = build_event(
    Decision(Outcome.ALLOWED, Caller("abcdefghijkl", "ada@example.com", "free")),
    parse_request(rest_event()),
    "test",
    1_795_000_000.0,
)
THROTTLED = "ProvisionedThroughputExceededException"
HALF = 2**127  # two shards, as `metering provision` makes them


def _event(email: str | None) -> UsageEventV1:
    caller = Caller("abcdefghijkl", email, "free") if email else None
    outcome = Outcome.ALLOWED if caller else Outcome.AUTH_FAILED
    return build_event(Decision(outcome, caller), parse_request(rest_event()), "test", 1_795_000_000.0)


def _hashed(key: str) -> int:
    return int(hashlib.md5(key.encode()).hexdigest(), 16)


def _user_in(shard: int) -> str:
    """An email whose events go to the shard (0: the lower half of the hash keys)."""
    return next(
        f"u{i}@example.com"
        for i in range(100)
        if (_hashed(partition_key(_event(f"u{i}@example.com"))) >= HALF) == shard
    )


class FakeKinesis:
    """PutRecords as Kinesis answers it (one result per record, on the shard the key hashes to); can
    fail whole calls, refuse the first records of the first calls for the moment (throttling), or
    block until released. `ListShards` lists two shards, or fails with `list_error`."""

    def __init__(self, error: Exception | None = None, refuse: int = 0, refusing_calls: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.error = error
        self.list_error: Exception | None = None
        self.shards = [("shardId-000000000000", 0), ("shardId-000000000001", HALF)]
        self.list_calls = 0
        self.refuse, self.refusing_calls = refuse, refusing_calls
        self.gate = threading.Event()
        self.gate.set()

    def list_shards(self, StreamName: str) -> dict[str, Any]:
        self.list_calls += 1
        if self.list_error:
            raise self.list_error
        return {
            "Shards": [
                {"ShardId": shard, "HashKeyRange": {"StartingHashKey": str(start)}, "SequenceNumberRange": {}}
                for shard, start in self.shards
            ]
        }

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.gate.wait()
        if self.error:
            raise self.error
        refused = min(self.refuse if self.refusing_calls else 0, len(Records))
        self.refusing_calls = max(0, self.refusing_calls - 1)
        self.batches.append(Records[refused:])
        results = [{"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}] * refused
        results += [
            {"SequenceNumber": "1", "ShardId": self._shard(r["PartitionKey"])} for r in Records[refused:]
        ]
        return {"FailedRecordCount": refused, "Records": results}

    def _shard(self, key: str) -> str:
        return next(shard for shard, start in reversed(self.shards) if _hashed(key) >= start)

    def events(self) -> list[dict[str, Any]]:
        return [
            event for batch in self.batches for record in batch for event in record_events(record["Data"])
        ]


def test_events_are_batched_and_counted() -> None:
    """Queued events go out packed in usage batches, under the user's partition key."""
    fake = FakeKinesis()
    fake.gate.clear()
    producer = KinesisProducer(fake, "stream")
    for _ in range(700):
        producer.emit(EVENT)
    fake.gate.set()
    assert producer.flush(5)
    records = [record for batch in fake.batches for record in batch]
    assert len(fake.events()) == 700 and len(records) == 700 / BATCH_EVENTS
    assert all(len(record_events(record["Data"])) == BATCH_EVENTS for record in records)
    assert {record["PartitionKey"] for record in records} == {partition_key(EVENT)}
    stats = producer.stats()
    assert (stats.sent, stats.records, stats.pending) == (700, 700 / BATCH_EVENTS, 0)


def test_each_shard_gets_a_batch_of_its_own_events_under_its_first_events_key() -> None:
    """Events keep their shard (one user, one shard), as records of their own would: a flush range
    then holds all of a user's events. Keyless events spread over the shards by their own ids."""
    fake = FakeKinesis()
    users = [_user_in(0), _user_in(1)]
    producer = KinesisProducer(fake, "stream")
    emitted = [_event(users[i % 2]) for i in range(10)] + [_event(None) for _ in range(40)]
    for event in emitted:
        producer.emit(event)
    assert producer.flush(5)
    records = [record for batch in fake.batches for record in batch]
    for record in records:
        events = record_events(record["Data"])
        assert record["PartitionKey"] == partition_key(events[0])
        shards = {fake._shard(partition_key(event)) for event in events}
        assert shards == {fake._shard(record["PartitionKey"])}
    assert sorted(e["eventId"] for e in fake.events()) == sorted(e["eventId"] for e in emitted)
    assert fake.list_calls == 1


def test_without_the_shard_map_batches_mix_shards_and_every_event_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ListShards refused (say, not permitted): one batch for all, still every event sent."""
    fake = FakeKinesis()
    fake.list_error = ClientError({"Error": {"Code": "AccessDeniedException"}}, "ListShards")
    producer = KinesisProducer(fake, "stream")
    for i in range(10):
        producer.emit(_event(_user_in(i % 2)))
    assert producer.flush(5)
    assert len(fake.events()) == 10 and producer.stats().records == 1
    assert "AccessDeniedException" in caplog.text


def test_a_reshard_is_noticed_and_the_map_read_again() -> None:
    """Kinesis answering with another shard than the map says (a split or merge) re-reads the map,
    at most every MAP_REFRESH_SECONDS."""
    fake, clock = FakeKinesis(), FakeClock()
    producer = KinesisProducer(fake, "stream", monotonic=clock)
    producer.emit(EVENT)
    assert producer.flush(5) and fake.list_calls == 1
    fake.shards = [("shardId-000000000002", 0)]  # merged: one shard for all
    producer.emit(EVENT)
    assert producer.flush(5) and fake.list_calls == 1
    clock.advance(MAP_REFRESH_SECONDS)
    producer.emit(EVENT)
    assert producer.flush(5) and fake.list_calls == 2
    producer.emit(EVENT)
    assert producer.flush(5) and fake.list_calls == 2 and producer.stats().sent == 4


def test_a_batch_closes_when_full_or_old() -> None:
    """A batch goes when it holds `batch_events` events, when it would pass MAX_BATCH_BYTES, or once
    its first event is `linger_s` old; `flush` sends the open ones at once."""
    fake = FakeKinesis()
    producer = KinesisProducer(fake, "stream", batch_events=3, linger_s=0.2)
    for _ in range(3):
        producer.emit(EVENT)
    _wait(lambda: len(fake.batches) == 1)
    producer.emit(EVENT)
    started = time.monotonic()
    _wait(lambda: len(fake.batches) == 2)
    assert 0.15 < time.monotonic() - started < 1.0
    big = dict(EVENT, userAgent="x" * (MAX_BATCH_BYTES // 2))  # two make a batch too big: one each
    producer = KinesisProducer(fake, "stream")
    producer.emit(big)
    producer.emit(big)
    assert producer.flush(5)
    assert [len(record_events(r["Data"])) for r in fake.batches[-1]] == [1, 1]
    producer.close(1)


def _wait(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_failing_call_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A call failing for good (a missing stream) counts its events as failed, at once, and logs."""
    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "PutRecords")
    producer = KinesisProducer(FakeKinesis(error=error), "stream")
    producer.emit(EVENT)
    assert producer.flush(5)
    assert (producer.stats().sent, producer.stats().failed, producer.stats().retried) == (0, 1, 0)
    assert "ResourceNotFoundException" in caplog.text


def test_an_unexpected_error_neither_stops_the_sender_nor_blocks_flush() -> None:
    """Any exception from the client (not only botocore's) costs its batch, nothing more."""
    fake = FakeKinesis(error=RuntimeError("bug in a client plugin"))
    producer = KinesisProducer(fake, "stream")
    producer.emit(EVENT)
    assert producer.flush(5)
    fake.error = None
    producer.emit(EVENT)
    assert producer.flush(5)
    assert (producer.stats().sent, producer.stats().failed, producer.stats().pending) == (1, 1, 0)


def test_throttled_records_are_put_again_within_the_budget() -> None:
    """Records a shard refuses over its quota are retried off the request path and then sent."""
    fake = FakeKinesis(refuse=2, refusing_calls=3)
    producer = KinesisProducer(fake, "stream", retry_seconds=5)
    for _ in range(5):
        producer.emit(EVENT)
    assert producer.flush(10)
    stats = producer.stats()
    assert (stats.sent, stats.failed, stats.retried) == (5, 0, 15)  # one batch of 5, refused thrice
    assert len(fake.events()) == 5


def test_records_still_throttled_past_the_budget_are_counted_as_failed() -> None:
    """The retry is bounded: past `retry_seconds`, what is still refused counts as failed."""
    fake = FakeKinesis(refuse=1, refusing_calls=10_000)
    producer = KinesisProducer(fake, "stream", retry_seconds=0.3)
    producer.emit(_event(_user_in(0)))  # two shards, two records in one call: the first is refused
    producer.emit(_event(_user_in(1)))
    assert producer.flush(5)
    stats = producer.stats()
    assert (stats.sent, stats.failed) == (1, 1) and stats.retried >= 1
    throttled_call = ClientError({"Error": {"Code": THROTTLED}}, "PutRecords")
    producer = KinesisProducer(FakeKinesis(error=throttled_call), "stream", retry_seconds=0.3)
    producer.emit(EVENT)
    assert producer.flush(5)
    assert producer.stats().failed == 1 and producer.stats().retried >= 1


def test_full_queue_drops_instead_of_blocking() -> None:
    """When the sender is stuck, emit stays instant and drops past the bound: what a container
    holds is the queue, one open batch per shard, and the batches of the call in flight."""
    fake = FakeKinesis()
    fake.gate.clear()
    producer = KinesisProducer(fake, "stream", max_queue=10, batch_events=5)
    started = time.perf_counter()
    for _ in range(100):
        producer.emit(EVENT)
    assert time.perf_counter() - started < 0.5
    assert not producer.flush(0.05)
    assert producer.stats().dropped >= 100 - 10 - 2 * 5 - 11  # one take: the queue and the one waited for
    fake.gate.set()
    assert producer.flush(5)


@pytest.mark.parametrize("dead", ["black_hole", "refused"])
def test_dead_endpoint_costs_the_emitter_nothing(request: pytest.FixtureRequest, dead: str) -> None:
    """Against a black-holed or refused endpoint, emit stays instant and the sender gives up quickly."""
    endpoint = request.getfixturevalue("black_hole") if dead == "black_hole" else closed_port()
    defaults = AuthorizerSettings()
    client = kinesis_client(
        connect_timeout=defaults.kinesis_connect_timeout_seconds,
        read_timeout=defaults.kinesis_read_timeout_seconds,
        endpoint_url=endpoint,
    )
    producer = KinesisProducer(client, "stream")
    started = time.perf_counter()
    producer.emit(EVENT)
    assert time.perf_counter() - started < 0.05
    assert producer.flush(2.0)  # one attempt, connect 0.1 s / read 0.3 s
    assert producer.stats().failed == 1
    producer.close(1)
