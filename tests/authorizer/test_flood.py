"""Kinesis' write quotas per shard (1,000 records/s and 1 MiB/s; records over them are refused, and a
producer that drops them loses events): 10,000 events/s from many Lambda containers fit two shards,
and a keyless flood does not crowd out paying users' events."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.events import build_event
from authorizer.producer import KinesisProducer
from authorizer.request import parse_request
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings
from consumer.testing import FakeClock
from contract.events import UsageEventV1
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, STREAM, Aws, new_key, rest_event
from tests.records import record_events

RECORDS_PER_SECOND = 1000
BYTES_PER_SECOND = 1024 * 1024


@dataclass
class ShardLoad:
    """One shard's writes in the last second, and the most it ever held."""

    window: deque[tuple[float, int]] = field(default_factory=deque)
    bytes: int = 0
    peak_records: int = 0
    peak_bytes: int = 0


class QuotaKinesis:
    """PutRecords (and ListShards) against shards that enforce Kinesis' write quotas over the last
    second of `clock`, a sliding window: stricter than Kinesis' own per-second accounting."""

    def __init__(self, clock: Callable[[], float], shards: int = 2) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._width = 2**128 // shards
        self.shards = [ShardLoad() for _ in range(shards)]
        self.records: list[tuple[int, bytes]] = []  # shard, data
        self.refused = 0

    def list_shards(self, StreamName: str) -> dict[str, Any]:
        return {
            "Shards": [
                {
                    "ShardId": f"shardId-{shard:012d}",
                    "HashKeyRange": {"StartingHashKey": str(shard * self._width)},
                    "SequenceNumberRange": {"StartingSequenceNumber": "0"},
                }
                for shard in range(len(self.shards))
            ]
        }

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            results = [self._put(record) for record in Records]
        failed = sum("ErrorCode" in result for result in results)
        return {"FailedRecordCount": failed, "Records": results}

    def stored(self) -> list[dict[str, Any]]:
        return [event | {"shard": shard} for shard, data in self.records for event in record_events(data)]

    def _put(self, record: dict[str, Any]) -> dict[str, Any]:
        shard = int(hashlib.md5(record["PartitionKey"].encode()).hexdigest(), 16) // self._width
        load, now = self.shards[shard], self._clock()
        while load.window and load.window[0][0] <= now - 1:
            load.bytes -= load.window.popleft()[1]
        size = len(record["Data"]) + len(record["PartitionKey"])
        if len(load.window) >= RECORDS_PER_SECOND or load.bytes + size > BYTES_PER_SECOND:
            self.refused += 1
            return {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
        load.window.append((now, size))
        load.bytes += size
        load.peak_records = max(load.peak_records, len(load.window))
        load.peak_bytes = max(load.peak_bytes, load.bytes)
        self.records.append((shard, record["Data"]))
        return {"SequenceNumber": str(len(self.records)), "ShardId": f"shardId-{shard:012d}"}


def test_a_keyless_flood_from_one_address_loses_no_paying_users_event(aws: Aws) -> None:
    """3,000 keyless requests from one IP and 200 paying calls in the same second, on two shards, one
    event per record (the quota must be exceeded, or this tests nothing)."""
    clock = FakeClock()  # Kinesis' second: moves only while the producer waits to retry
    kinesis = QuotaKinesis(clock)
    producer = KinesisProducer(
        kinesis, STREAM, retry_seconds=2, batch_events=1, sleep=clock.advance, monotonic=clock
    )
    settings = AuthorizerSettings(
        environment="test", stream_name=STREAM, api_keys_table=KEYS_TABLE, rate_limit_table=LIMITS_TABLE
    )
    authorizer = Authorizer(settings, dynamodb=aws.dynamodb, producer=producer)
    secrets = [new_key(aws, email=f"user{i}@example.com", plan="enterprise")[1] for i in range(20)]
    flood = rest_event({}, requestContext={"requestId": "flood", "identity": {"sourceIp": "198.51.100.66"}})
    paying = 0
    for i in range(3200):
        if i % 16 == 15:
            authorizer.handle(rest_event({"x-api-key": secrets[paying % 20]}))
            paying += 1
        else:
            authorizer.handle(flood)
    assert producer.flush(30)
    stats = producer.stats()
    stored = kinesis.stored()
    calls = [e for e in stored if e["eventType"] == "API_CALL"]
    print(
        f"\n[flood] refused over quota {kinesis.refused}, retried {stats.retried}, stored {len(calls)} calls"
    )
    assert kinesis.refused > 0, "the flood must exceed the quota, or this tests nothing"
    assert paying == 200 and len(calls) == 200 and len({e["eventId"] for e in calls}) == 200
    assert (stats.failed, stats.dropped, len(stored)) == (0, 0, 3200)
    # The flood itself spreads over the shards instead of filling one (it came from one address).
    flood_per_shard = Counter(e["shard"] for e in stored if e["userEmail"] is None)
    assert min(flood_per_shard.values()) > 0.4 * sum(flood_per_shard.values()), flood_per_shard


# -- 10,000 events/s from many containers into two shards -------------------------------------------

RATE = 10_000  # events/s, all containers together
SECONDS = 6.0


def _traffic(count: int) -> list[UsageEventV1]:
    """Events of 1,000 users (3 % refused keys without one), built before the clock starts."""
    request = parse_request(rest_event({}))
    events = []
    for i in range(count):
        if i % 33 == 0:
            decision = Decision(Outcome.AUTH_FAILED, reason=Reason.UNKNOWN_KEY)
        else:
            user = i * 7919 % 1000
            decision = Decision(Outcome.ALLOWED, Caller(f"key{user:09d}", f"user{user}@example.com", "pro"))
        event = build_event(decision, request, "test", 1_795_000_000 + i / RATE)
        event["requestId"] = str(uuid.uuid4())  # as unique as API Gateway's: compresses as badly
        event["sourceIp"] = f"198.51.{user % 200}.{i % 250}" if event["userEmail"] else "203.0.113.9"
        event["path"] = f"/items/{i % 9973}"
        events.append(event)
    return events


@pytest.mark.timeout(120)
@pytest.mark.parametrize("containers", [100, 500])
def test_ten_thousand_events_a_second_from_many_containers_fit_two_shards(containers: int) -> None:
    """The real producer in each of `containers` Lambda containers, 10,000 events/s in all for 6 s,
    into two shards enforcing both quotas: nothing refused, nothing lost, nothing twice.

    100 containers (an authorizer of ~10 ms at 10,000/s) fill their batches (25 events); 500 (~50 ms)
    send theirs when a second old: the records a shard receives are then (containers) / linger."""
    kinesis = QuotaKinesis(time.monotonic)
    producers = [KinesisProducer(kinesis, STREAM) for _ in range(containers)]
    events = _traffic(int(RATE * SECONDS))
    started = time.monotonic()
    for i, event in enumerate(events):
        if i % 100 == 0:  # paced in steps of 10 ms, as requests arrive
            time.sleep(max(0.0, started + i / RATE - time.monotonic()))
        producers[i % containers].emit(event)
    driven = time.monotonic() - started
    for producer in producers:
        assert producer.flush(10)
        producer.close(1)
    stats = [producer.stats() for producer in producers]
    stored = kinesis.stored()
    records, sent_bytes = len(kinesis.records), sum(len(data) for _, data in kinesis.records)
    print(
        f"\n[10k/s] {containers} containers, {len(events) / driven:,.0f} events/s for {driven:.1f} s: "
        f"{len(events) / records:.1f} events/record, {sent_bytes / len(events):.0f} bytes/event; per shard "
        f"peak {max(s.peak_records for s in kinesis.shards)} records/s, "
        f"{max(s.peak_bytes for s in kinesis.shards) / 2**20:.2f} MiB/s; refused {kinesis.refused}"
    )
    assert len(events) / driven > 0.9 * RATE, "the driver could not keep up: this tests less than 10,000/s"
    assert kinesis.refused == 0
    assert sum(s.sent for s in stats) == len(events) == len(stored)
    assert sum(s.failed + s.dropped + s.retried for s in stats) == 0
    assert sorted(e["eventId"] for e in stored) == sorted(e["eventId"] for e in events)
    # One user, one shard: a flush range then holds all of a user's events.
    shards_of: dict[str, set[int]] = {}
    for counted in stored:
        if counted["userEmail"]:
            shards_of.setdefault(counted["userEmail"], set()).add(counted["shard"])
    assert len(shards_of) == 1000 and all(len(shards) == 1 for shards in shards_of.values())
