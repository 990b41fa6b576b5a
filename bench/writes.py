"""DynamoDB writes per 1,000 events: what the real `DynamoDBSink` sends, by item kind.

    .venv/bin/python -m bench.writes                      # the issue's scenarios (about 5 minutes)
    .venv/bin/python -m bench.writes --rate 10000 --users 1000 --flush-interval 5 10 --seconds 20

Each scenario drives the real record processor (`consumer.processor.UsageRecordProcessor` through
`consumer.kcl_protocol.KCLProcess`) with synthetic traffic (`bench.feed.Traffic`: Poisson arrivals,
each user with its own address and key, 1 % rate-limited and 0.5 % keyless calls, the access log of
every request), split over 2 shards as Kinesis splits the producer's partition keys, one poll per
shard every 0.5 s (`idleTimeBetweenReadsInMillis`) and a flush every `--flush-interval` seconds of
the processor's clock. The sink is the production `DynamoDBSink`, writing to moto's DynamoDB
in-process through a client that counts every write request it sends (claims, intents, item
updates, archive pages, conditional writes refused) and the write units DynamoDB would bill for
it: ceil(item size / 1 KB) for the table, the larger of the item before and after, and one unit
for the keys-only `by-bucket-keys` index when an item with a bucket is created (its updates leave
the index's entry as it is). The KCL's
own checkpoints and lease renewals are not the sink's: `metering cost` prices them apart.

Each line also shows what `metering.cost.writes_per_event` predicts for the same traffic, and the
ratio, so the model the cost is computed from is checked against the real writer in the same run.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from moto import mock_aws
from prometheus_client import CollectorRegistry

from bench.feed import Traffic, run_shard
from consumer import aws
from consumer.metrics import ProcessorMetrics
from consumer.processor import UsageRecordProcessor
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.testing import FakeClock, RecordingDeadLetters
from contract.table import BUCKET, GLOBAL, analytics_table_spec
from metering import cost

TABLE, APPLICATION = "bench-analytics", "bench-consumer"
POLL_SECONDS = 0.5  # properties/consumer.properties: idleTimeBetweenReadsInMillis
KB = 1024
EVENTS_PER_MONTH_10M = 10_000_000 / cost.SECONDS_PER_MONTH  # ~3.8 events/s


@dataclass(slots=True)
class Tally:
    """Write requests and billed write units by item kind."""

    requests: Counter[str] = field(default_factory=Counter)
    table_units: Counter[str] = field(default_factory=Counter)
    index_units: Counter[str] = field(default_factory=Counter)

    def total(self, counter: Counter[str], skip: frozenset[str] = frozenset()) -> int:
        return sum(n for kind, n in counter.items() if kind not in skip)


class CountingClient:
    """A DynamoDB client that counts the writes it passes on (everything else goes straight through)."""

    def __init__(self, client: Any, index_projection: str) -> None:
        self._client = client
        self._keys_only = index_projection == "KEYS_ONLY"
        self.tally = Tally()
        self._sizes: dict[tuple[str, str], int] = {}  # item key -> size, for the larger-of rule
        self._kinds: dict[tuple[str, str], str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **request: Any) -> Any:
        key = _key(request["Key"])
        try:
            reply = self._client.update_item(**request)
        except Exception as exc:  # a refused condition is billed as a write of the item as it is
            old = getattr(exc, "response", {}).get("Item")
            self._count(key, _kind(key, request), old, refused=True)
            raise
        self._count(key, _kind(key, request), reply.get("Attributes"))
        return reply

    def put_item(self, **request: Any) -> Any:
        reply = self._client.put_item(**request)
        key = _key(request["Item"])
        self._count(key, _kind(key, request), request["Item"])
        return reply

    def _count(
        self, key: tuple[str, str], kind: str, item: dict[str, Any] | None, *, refused: bool = False
    ) -> None:
        before = self._sizes.get(key, 0)
        after = before if refused or item is None else item_size(item)
        self._sizes[key], self._kinds[key] = after, kind
        self.tally.requests[kind] += 1
        self.tally.table_units[kind] += max(1, math.ceil(max(before, after) / KB))
        if refused or item is None or BUCKET not in item:
            return
        if not self._keys_only:  # an index projecting ALL rewrites its copy on every update
            self.tally.index_units[kind] += max(1, math.ceil(after / KB))
        elif before == 0:  # a keys-only entry is written once, when the item is created
            self.tally.index_units[kind] += 1

    def items_by_kind(self) -> dict[str, tuple[int, float]]:
        """Items written and their mean size in bytes, by kind (what storage is priced from)."""
        sizes: dict[str, list[int]] = {}
        for key, kind in self._kinds.items():
            sizes.setdefault(kind, []).append(self._sizes[key])
        return {kind: (len(found), sum(found) / len(found)) for kind, found in sizes.items()}


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def _kind(key: tuple[str, str], request: dict[str, Any]) -> str:
    """`USER MINUTE`, `GLOBAL HOUR`, `ARCHIVE page`, `FLUSH intent`, `FLUSH claim`, ..."""
    pk, sk = key
    family = pk if pk == GLOBAL else pk.partition("#")[0]
    if family == "ARCHIVE":
        return "ARCHIVE page"
    if family == "FLUSH":
        return "FLUSH claim" if "claim :one" in request.get("UpdateExpression", "") else "FLUSH intent"
    return f"{family} {sk.partition('#')[0]}"


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: attribute names plus values (numbers ~1 byte per 2 digits)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "B":
        return len(data)
    if kind == "N":
        digits = Decimal(data).normalize().as_tuple().digits
        return len(digits) // 2 + 2
    if kind in ("SS", "NS"):
        return sum(len(str(member).encode()) for member in data)
    if kind in {"BOOL", "NULL"}:
        return 1
    return len(str(data))  # lists and maps: not written by the sink


@dataclass(frozen=True, slots=True)
class Result:
    traffic: Traffic
    flush_interval: float
    events: int  # usage events sent (access-log records apart)
    tally: Tally
    items: dict[str, tuple[int, float]]  # kind -> items written, mean bytes
    seconds: float

    def per_1000(self, counter: Counter[str]) -> float:
        """Per 1,000 usage events; the claims (once per processor start) are left out."""
        return self.tally.total(counter, frozenset({"FLUSH claim"})) * 1000 / self.events


def run(traffic: Traffic, flush_interval: float) -> Result:
    """One scenario against a fresh in-process DynamoDB; checks every event was counted once."""
    started = time.perf_counter()
    with mock_aws():
        client = aws.client("dynamodb", "us-east-1")
        spec = analytics_table_spec(TABLE)
        client.create_table(**spec)
        (index,) = spec["GlobalSecondaryIndexes"]
        counting = CountingClient(client, index["Projection"]["ProjectionType"])
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(io.StringIO()))
        log = structlog.get_logger("bench")

        def processor(clock: FakeClock) -> UsageRecordProcessor:
            sink = DynamoDBSink(counting, TABLE, APPLICATION, concurrency=1, log=log)  # type: ignore[arg-type]
            return UsageRecordProcessor(
                sink,
                RecordingDeadLetters(),
                log,
                flush_interval=flush_interval,
                monotonic=clock,
                sleep=lambda _s: None,
                now=lambda: traffic.start,
                metrics=ProcessorMetrics(CollectorRegistry()),
            )

        for shard in range(traffic.shards):
            run_shard(traffic, shard, processor, every=POLL_SECONDS, tail=flush_interval)
        events = traffic.usage_events()
        _check_counted(client, events)
    seconds = time.perf_counter() - started
    return Result(traffic, flush_interval, events, counting.tally, counting.items_by_kind(), seconds)


def _check_counted(client: Any, events: int) -> None:
    """The GLOBAL hour items hold every event once (both shards' ranges, every type)."""
    counted = 0
    pages = client.get_paginator("query").paginate(
        TableName=TABLE,
        KeyConditionExpression="pk = :g AND begins_with(sk, :h)",
        ExpressionAttributeValues={":g": {"S": GLOBAL}, ":h": {"S": "HOUR#"}},
    )
    for page in pages:
        for item in page["Items"]:
            counted += sum(
                int(item.get(name, {}).get("N", "0")) for name in ("calls", "authFailures", "rateLimited")
            )
    if counted != events:
        raise AssertionError(f"counted {counted} of {events} events")


def predicted(traffic: Traffic, flush_interval: float) -> cost.WriteEstimate:
    return cost.writes_per_event(
        cost.Traffic(
            events_per_second=traffic.rate,
            users=traffic.users,
            shards=traffic.shards,
            flush_interval_seconds=flush_interval,
            rate_limited_share=traffic.rate_limited_share,
            keyless_share=traffic.unknown_share,
            access_logs=traffic.access_logs,
            endpoints=5,
        )
    )


def report(result: Result) -> None:
    t, tally = result.traffic, result.tally
    model = predicted(t, result.flush_interval)
    requests, table, index = (
        result.per_1000(c) for c in (tally.requests, tally.table_units, tally.index_units)
    )
    print(
        f"\n{t.rate:,.1f} events/s from {t.users:,} users, flush {result.flush_interval:g} s,"
        f" {t.shards} shards: {result.events:,} events ({result.seconds:.0f} s to run)"
    )
    print(
        f"  {'kind':<16} {'requests/1k':>12} {'WRU table/1k':>13} {'WRU index/1k':>13} {'model req/1k':>13}"
        f" {'items':>8} {'mean B':>7}"
    )
    n = 1000 / result.events
    for kind in sorted(tally.requests):
        count, size = result.items.get(kind, (0, 0.0))  # a claim shares the intent's item
        print(
            f"  {kind:<16} {tally.requests[kind] * n:>12.1f} {tally.table_units[kind] * n:>13.1f}"
            f" {tally.index_units[kind] * n:>13.1f} {model.requests_by_kind.get(kind, 0.0) * 1000:>13.1f}"
            f" {count:>8,} {size:>7,.0f}"
        )
    print(f"  {'total':<16} {requests:>12.1f} {table:>13.1f} {index:>13.1f}   (claims left out)")
    print(
        f"  model: {model.requests * 1000:.1f} requests/1k"
        f" ({requests / (model.requests * 1000):.2f}x measured/model),"
        f" {model.table_units * 1000:.1f} table WRU/1k ({table / (model.table_units * 1000):.2f}x);"
        f" index {model.index_units * 1000:.1f} WRU/1k in steady state (one per item created: a"
        f" run of {t.seconds:g} s creates every item it touches, so it writes more)"
    )


Scenario = tuple[float, int, float, tuple[float, ...]]  # events/s, users, seconds of traffic, flushes
SCENARIOS: tuple[Scenario, ...] = (
    (EVENTS_PER_MONTH_10M, 100, 900.0, (5.0, 60.0)),
    (EVENTS_PER_MONTH_10M, 1000, 900.0, (5.0, 60.0)),
    (10_000.0, 1000, 20.0, (5.0, 10.0)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, help="events per second (event time)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seconds", type=float, help="seconds of traffic (default: 900 low, 20 high)")
    parser.add_argument(
        "--flush-interval", type=float, nargs="+", default=[5.0], help="FLUSH_INTERVAL_SECONDS"
    )
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--no-access-logs", action="store_true")
    args = parser.parse_args()
    scenarios: tuple[Scenario, ...] = SCENARIOS
    if args.rate is not None:
        seconds = args.seconds or (900.0 if args.rate < 100 else 20.0)
        scenarios = ((args.rate, args.users, seconds, tuple(args.flush_interval)),)
    for rate, users, seconds, intervals in scenarios:
        traffic = Traffic(rate, users, seconds, shards=args.shards, access_logs=not args.no_access_logs)
        for interval in intervals:
            report(run(traffic, interval))


if __name__ == "__main__":
    main()
