"""10,000 usage events/s from many Lambda containers into two shards that enforce Kinesis' write quotas.

    .venv/bin/python -m bench.flood [--containers 100 500] [--rate 10000] [--seconds 6]

The real `KinesisProducer` of each container, fed 1,000 users' events paced in 10 ms steps, sends to
`QuotaKinesis`: two shards refusing whatever passes 1,000 records or 1 MiB in any sliding second.
Printed per run: the rate the driver reached (a machine's speed, so a figure here and never an
assertion of the tests), events per record, bytes per event, each shard's peak records/s and MiB/s,
and what was refused. `tests/authorizer/test_flood.py` asserts, at whatever rate it reached, that
nothing was refused, lost or sent twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.events import build_event
from authorizer.producer import KinesisProducer, ProducerStats
from authorizer.request import parse_request
from contract.batch import BATCH_PREFIX, is_batch
from contract.events import UsageEventV1

RECORDS_PER_SECOND = 1000
BYTES_PER_SECOND = 1024 * 1024
STREAM = "complical-usage-stream-bench"


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
        """Every event stored, as sent, with the shard that holds it (`shard`)."""
        return [event | {"shard": shard} for shard, data in self.records for event in _events(data)]

    def _put(self, record: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.md5(record["PartitionKey"].encode(), usedforsecurity=False).hexdigest()
        shard = int(digest, 16) // self._width
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


def _events(data: bytes) -> list[dict[str, Any]]:
    if is_batch(data):
        events: list[dict[str, Any]] = json.loads(zlib.decompress(data[len(BATCH_PREFIX) :]))
        return events
    return [json.loads(data)]


def traffic(count: int, rate: float) -> list[UsageEventV1]:
    """Events of 1,000 users (3 % refused keys without one), built before the clock starts."""
    request = parse_request(_rest_event())
    events = []
    for i in range(count):
        user = i * 7919 % 1000
        if i % 33 == 0:
            decision = Decision(Outcome.AUTH_FAILED, reason=Reason.UNKNOWN_KEY)
        else:
            decision = Decision(Outcome.ALLOWED, Caller(f"key{user:09d}", f"user{user}@example.com", "pro"))
        event = build_event(decision, request, "bench", 1_795_000_000 + i / rate)
        event["requestId"] = str(uuid.uuid4())  # as unique as API Gateway's: compresses as badly
        event["sourceIp"] = f"198.51.{user % 200}.{i % 250}" if event["userEmail"] else "203.0.113.9"
        event["path"] = f"/items/{i % 9973}"
        events.append(event)
    return events


def _rest_event() -> dict[str, Any]:
    return {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items/42",
        "resource": "/items/{id}",
        "path": "/items/42",
        "httpMethod": "GET",
        "headers": {},
        "requestContext": {"requestId": "bench", "identity": {"sourceIp": "198.51.100.7"}},
    }


@dataclass(frozen=True, slots=True)
class FloodRun:
    containers: int
    events: list[UsageEventV1]
    driven_seconds: float
    kinesis: QuotaKinesis
    stats: list[ProducerStats]

    @property
    def rate(self) -> float:
        return len(self.events) / self.driven_seconds

    def describe(self) -> str:
        records = len(self.kinesis.records)
        sent_bytes = sum(len(data) for _, data in self.kinesis.records)
        shards = self.kinesis.shards
        return (
            f"{self.containers} containers, {self.rate:,.0f} events/s for {self.driven_seconds:.1f} s: "
            f"{len(self.events) / records:.1f} events/record,"
            f" {sent_bytes / len(self.events):.0f} bytes/event;"
            f" per shard peak {max(s.peak_records for s in shards)} records/s,"
            f" {max(s.peak_bytes for s in shards) / 2**20:.2f} MiB/s; refused {self.kinesis.refused}"
        )


def drive(containers: int, rate: float = 10_000, seconds: float = 6.0) -> FloodRun:
    """The real producer in each of `containers` containers, `rate` events/s in all for `seconds`,
    paced in steps of 10 ms as requests arrive; every producer flushed and closed at the end."""
    kinesis = QuotaKinesis(time.monotonic)
    producers = [KinesisProducer(kinesis, STREAM) for _ in range(containers)]  # type: ignore[arg-type]
    events = traffic(int(rate * seconds), rate)
    started = time.monotonic()
    for i, event in enumerate(events):
        if i % 100 == 0:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        producers[i % containers].emit(event)
    driven = time.monotonic() - started
    flushed = [producer.flush(10) for producer in producers]
    for producer in producers:
        producer.close(1)
    if not all(flushed):
        raise RuntimeError("a producer did not send everything it held within 10 s")
    return FloodRun(containers, events, driven, kinesis, [producer.stats() for producer in producers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    for containers in args.containers:
        run = drive(containers, args.rate, args.seconds)
        print(f"{run.describe()}; {run.rate / args.rate:.2f}x the rate asked for")


if __name__ == "__main__":
    main()
