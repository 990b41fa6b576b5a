"""Which Kinesis record format carries 10,000 usage events/s into two shards (issue 12).

    .venv/bin/python -m bench.producer_formats [--events 20000] [--events-per-record 25]

Each candidate packs the same events (built by the authorizer's own `build_event`, varied as real
traffic is: 1,000 users, a few routes and user agents, unique event and request ids) as one
container's producer would: per shard (the partition key's hash), `--events-per-record` at a time.
Printed per candidate: bytes per event (data and partition key, what Kinesis meters), events per
record, and what 10,000 events/s into two shards make per shard: records/s and MiB/s against the
quotas (1,000 records/s, 1 MiB/s); then the CPU it costs per event to pack (the Lambda) and to open
(the consumer). KPL aggregation is measured with `aws-kinesis-agg` when it is installed
(`.venv/bin/pip install aws-kinesis-agg`); the KCL de-aggregates it without our code.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import random
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.events import build_event, encode_event, partition_key
from authorizer.request import parse_request
from consumer.core.batch import decode_batch
from consumer.core.events import decode_event
from contract.batch import encode_batch
from contract.events import UsageEventV1

RATE = 10_000  # events/s into the stream
SHARDS = 2
RECORDS_PER_SHARD = 1000
BYTES_PER_SHARD = 1024 * 1024
ROUTES = [("GET", "/items/{id}", "/items/{n}"), ("POST", "/items", "/items"), ("GET", "/search", "/search")]
AGENTS = [
    "python-requests/2.31.0",
    "curl/8.5.0",
    "okhttp/4.12.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0",
]


def traffic(count: int, seed: int = 1) -> list[bytes]:
    """Encoded usage events v1 of 1,000 users (3 % refused keys), as the authorizer emits them."""
    rng = random.Random(seed)  # noqa: S311 - test data
    users = [
        (
            f"user{i}@{rng.choice(['example.com', 'acme.io'])}",
            f"{rng.getrandbits(60):012x}"[:12],
            rng.choice(AGENTS),
        )
        for i in range(1000)
    ]
    ips = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in users
    ]
    events = []
    for i in range(count):
        user = rng.randrange(len(users))
        email, key_id, agent = users[user]
        method, resource, path = rng.choice(ROUTES)
        request = parse_request(
            {
                "type": "REQUEST",
                "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:abc123/prod/{method}{resource}",
                "resource": resource,
                "path": path.replace("{n}", str(rng.randint(1, 99_999))),
                "httpMethod": method,
                "headers": {},
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "identity": {"sourceIp": ips[user], "userAgent": agent},
                },
            }
        )
        if i % 33 == 0:
            decision = Decision(Outcome.AUTH_FAILED, reason=Reason.UNKNOWN_KEY)
        else:
            decision = Decision(Outcome.ALLOWED, Caller(key_id, email, "pro"))
        events.append(encode_event(build_event(decision, request, "prod", 1_795_000_000 + i / RATE)))
    return events


@dataclass(frozen=True)
class Packed:
    records: list[tuple[bytes, str]]  # data, partition key
    pack_seconds: float


def by_shard(events: list[bytes]) -> list[list[tuple[bytes, str]]]:
    """The events of each shard, in order, with their partition keys."""
    shards: list[list[tuple[bytes, str]]] = [[] for _ in range(SHARDS)]
    for data in events:
        key = partition_key(_document(data))
        shards[int(hashlib.md5(key.encode(), usedforsecurity=False).hexdigest(), 16) * SHARDS >> 128].append(
            (data, key)
        )
    return shards


def _document(data: bytes) -> UsageEventV1:
    document: UsageEventV1 = json.loads(data)
    return document


def pack(
    events: list[bytes], per_record: int, packer: Callable[[list[tuple[bytes, str]]], list[tuple[bytes, str]]]
) -> Packed:
    shards = by_shard(events)
    started = time.process_time()
    records = [
        record
        for shard in shards
        for i in range(0, len(shard), per_record)
        for record in packer(shard[i : i + per_record])
    ]
    return Packed(records, time.process_time() - started)


def one_per_record(chunk: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
    return chunk


def usage_batch(chunk: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
    return [(encode_batch([data for data, _ in chunk]), chunk[0][1])]


def zlib_level(level: int) -> Callable[[list[tuple[bytes, str]]], list[tuple[bytes, str]]]:
    def packer(chunk: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
        document = b"[" + b",".join(data for data, _ in chunk) + b"]"
        return [(b"\x02" + zlib.compress(document, level), chunk[0][1])]

    return packer


def kpl_aggregation() -> Callable[[list[tuple[bytes, str]]], list[tuple[bytes, str]]] | None:
    try:
        aggregator = importlib.import_module("aws_kinesis_agg.aggregator")
    except ImportError:
        return None

    def packer(chunk: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
        records = aggregator.RecordAggregator()
        for data, key in chunk:
            records.add_user_record(key, data)
        key, _, data = records.clear_and_get().get_contents()
        return [(data, key)]

    return packer


def open_seconds(packed: Packed, opener: Callable[[bytes], object]) -> float:
    started = time.process_time()
    for data, _ in packed.records:
        opener(data)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--events-per-record", type=int, default=25)
    args = parser.parse_args()
    events, per = traffic(args.events), args.events_per_record
    now = datetime.fromtimestamp(1_795_000_000, UTC) + timedelta(minutes=1)
    candidates: dict[
        str,
        tuple[
            Callable[[list[tuple[bytes, str]]], list[tuple[bytes, str]]],
            int,
            Callable[[bytes], object] | None,
        ],
    ] = {
        "v1: one event per record": (one_per_record, 1, lambda data: decode_event(data, now)),
        f"usage batch v2 (zlib 6), {per}/record": (usage_batch, per, lambda data: decode_batch(data, now)),
        f"zlib level 1, {per}/record": (zlib_level(1), per, None),
        f"zlib level 9, {per}/record": (zlib_level(9), per, None),
        "usage batch v2, 5/record": (usage_batch, 5, None),
        "usage batch v2, 100/record": (usage_batch, 100, None),
        "usage batch v2, 500/record": (usage_batch, 500, None),
    }
    kpl = kpl_aggregation()
    if kpl is not None:
        candidates[f"KPL aggregation, {per}/record"] = (kpl, per, None)
        candidates["KPL aggregation, 500/record"] = (kpl, 500, None)
    size = sum(map(len, events)) / len(events)
    print(f"{len(events)} events of {size:.0f} bytes (JSON), {RATE:,}/s into {SHARDS} shards")
    print(
        f"{'candidate':<34} {'B/event':>8} {'ev/rec':>7} {'rec/s/shard':>12} {'MiB/s/shard':>12} "
        f"{'pack us/ev':>11} {'open us/ev':>11}"
    )
    for name, (packer, size, opener) in candidates.items():
        packed = pack(events, size, packer)
        per_event = sum(len(data) + len(key) for data, key in packed.records) / len(events)
        per_record = len(events) / len(packed.records)
        records_per_shard = RATE / SHARDS / per_record
        mib_per_shard = RATE / SHARDS * per_event / 2**20
        opened = "-" if opener is None else f"{open_seconds(packed, opener) / len(events) * 1e6:.2f}"
        over = " over" if records_per_shard > RECORDS_PER_SHARD or mib_per_shard > 1 else ""
        packing = packed.pack_seconds / len(events) * 1e6
        print(
            f"{name:<34} {per_event:>8.0f} {per_record:>7.1f} {records_per_shard:>12,.0f} "
            f"{mib_per_shard:>12.2f} {packing:>11.2f} {opened:>11}{over}"
        )
    if kpl is None:
        print("KPL aggregation not measured: .venv/bin/pip install aws-kinesis-agg")


if __name__ == "__main__":
    main()
