"""A keyless flood must not crowd out paying users' events (Kinesis: 1,000 records/s and 1 MiB/s
per shard; records over the quota are refused, and a producer that drops them loses events)."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from typing import Any

import orjson

from authorizer.producer import KinesisProducer
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings
from consumer.testing import FakeClock
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, STREAM, Aws, new_key, rest_event

RECORDS_PER_SECOND = 1000
BYTES_PER_SECOND = 1024 * 1024


class QuotaKinesis:
    """PutRecords against shards that enforce Kinesis' write quotas over the last second of `clock`."""

    def __init__(self, clock: FakeClock, shards: int = 2) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._width = 2**128 // shards
        self._windows: list[deque[tuple[float, int]]] = [deque() for _ in range(shards)]
        self.stored: list[dict[str, Any]] = []
        self.refused = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            results = [self._put(record) for record in Records]
        failed = sum("ErrorCode" in result for result in results)
        return {"FailedRecordCount": failed, "Records": results}

    def _put(self, record: dict[str, Any]) -> dict[str, Any]:
        shard = int(hashlib.md5(record["PartitionKey"].encode()).hexdigest(), 16) // self._width
        window, now = self._windows[shard], self._clock()
        while window and window[0][0] <= now - 1:
            window.popleft()
        size = len(record["Data"]) + len(record["PartitionKey"])
        if len(window) >= RECORDS_PER_SECOND or sum(b for _, b in window) + size > BYTES_PER_SECOND:
            self.refused += 1
            return {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
        window.append((now, size))
        self.stored.append(orjson.loads(record["Data"]) | {"shard": shard})
        return {"SequenceNumber": str(len(self.stored)), "ShardId": f"shardId-{shard:012d}"}


def test_a_keyless_flood_from_one_address_loses_no_paying_users_event(aws: Aws) -> None:
    """3,000 keyless requests from one IP and 200 paying calls in the same second, on two shards."""
    clock = FakeClock()  # Kinesis' second: moves only while the producer waits to retry
    kinesis = QuotaKinesis(clock)
    producer = KinesisProducer(kinesis, STREAM, retry_seconds=2, sleep=clock.advance, monotonic=clock)
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
    calls = [e for e in kinesis.stored if e["eventType"] == "API_CALL"]
    print(
        f"\n[flood] refused over quota {kinesis.refused}, retried {stats.retried}, stored {len(calls)} calls"
    )
    assert kinesis.refused > 0, "the flood must exceed the quota, or this tests nothing"
    assert paying == 200 and len(calls) == 200 and len({e["eventId"] for e in calls}) == 200
    assert (stats.failed, stats.dropped, len(kinesis.stored)) == (0, 0, 3200)
    # The flood itself spreads over the shards instead of filling one (it came from one address).
    flood_per_shard = Counter(e["shard"] for e in kinesis.stored if e["userEmail"] is None)
    assert min(flood_per_shard.values()) > 0.4 * sum(flood_per_shard.values()), flood_per_shard
