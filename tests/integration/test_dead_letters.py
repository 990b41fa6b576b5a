"""The real MultiLangDaemon with poison records interleaved: all dead-lettered, the valid ones exact."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest

from consumer.core.events import MAX_CLOCK_SKEW
from consumer.sinks.dead_letters import queue_url
from metering.commands import dlq
from tests.integration.conftest import Stack
from tests.integration.test_pipeline import make_events, wait_exact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _poison(template: dict[str, Any]) -> dict[bytes, str]:
    """Every kind of record that cannot be counted, each unique, with the reason it must get."""
    future = _rfc3339(datetime.now(UTC) + timedelta(days=1))
    missing = {k: v for k, v in template.items() if k != "eventId"}
    missing_type = {k: v for k, v in template.items() if k != "eventType"}
    kinds: list[tuple[Any, str]] = [
        (b"this is not json (poison 1)", "NOT_JSON"),
        (b"\xff\xfe\x00\x81 poison 2 \xc3\x28", "NOT_JSON"),
        ([1, 2, "poison 3"], "INVALID_FIELD"),
        (missing | {"requestId": "poison 4"}, "INVALID_FIELD"),
        (template | {"timestamp": 1764006733, "requestId": "poison 5"}, "INVALID_FIELD"),
        (template | {"version": 2, "requestId": "poison 6"}, "UNSUPPORTED_VERSION"),
        (template | {"eventType": "API_TELEPORT", "requestId": "poison 7"}, "UNKNOWN_EVENT_TYPE"),
        (template | {"timestamp": future, "requestId": "poison 8"}, "FUTURE_TIMESTAMP"),
        (template | {"userAgent": "x" * 20 * 1024, "requestId": "poison 9"}, "OVERSIZE"),
        (template | {"timestamp": "0001-01-01T00:00:00+14:00", "requestId": "poison 10"}, "STALE_TIMESTAMP"),
        (template | {"sourceIp": "9" * 1500, "requestId": "poison 11"}, "INVALID_FIELD"),
        # Each of these once stopped the shard for good, or split one user in two:
        (_deep(template | {"requestId": "poison 12"}), "TOO_DEEP"),
        (template | {"eventType": ["API_CALL"], "requestId": "poison 13"}, "INVALID_FIELD"),
        (missing_type | {"requestId": "poison 14"}, "INVALID_FIELD"),
        (template | {"userEmail": "\u212aate@example.com", "requestId": "poison 15"}, "INVALID_FIELD"),
        (template | {"userEmail": "kate@example.com\n", "requestId": "poison 16"}, "INVALID_FIELD"),
        (b'{"version":1e400,"requestId":"poison 17"}', "INVALID_FIELD"),
    ]
    return {(d if isinstance(d, bytes) else orjson.dumps(d)): reason for d, reason in kinds}


def _deep(document: dict[str, Any]) -> bytes:
    """A valid event with a 2,000-deep unknown field: msgspec recursed on it until RecursionError."""
    return orjson.dumps(document)[:-1] + b',"extra":' + b"[" * 2000 + b"]" * 2000 + b"}"


def _put(stack: Stack, entries: list[tuple[bytes, str]]) -> None:
    for i in range(0, len(entries), 250):
        records = [{"Data": data, "PartitionKey": key} for data, key in entries[i : i + 250]]
        reply = stack.kinesis.put_records(StreamName=stack.settings.stream_name, Records=records)
        assert reply["FailedRecordCount"] == 0


def _dead_letters(stack: Stack, expected: int, timeout: float = 30) -> dlq.Pass:
    """The queue once it holds `expected` distinct records (dead letters of a range flush with it)."""
    sqs: Any = boto3.client("sqs", region_name="us-east-1")
    url = queue_url(sqs, stack.settings.dlq_name)
    deadline = time.monotonic() + timeout
    while True:
        listed = dlq.list_dead_letters(sqs, url, limit=10_000, wait_seconds=0)
        if len(listed.records) >= expected or time.monotonic() > deadline:
            return listed
        time.sleep(0.5)


def _stream_events(stack: Stack) -> list[dict[str, Any]]:
    """Every JSON object on the stream, all shards."""
    events = []
    for shard in stack.kinesis.list_shards(StreamName=stack.settings.stream_name)["Shards"]:
        iterator = stack.kinesis.get_shard_iterator(
            StreamName=stack.settings.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in stack.kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]:
            with contextlib.suppress(orjson.JSONDecodeError):
                decoded = orjson.loads(record["Data"])
                if isinstance(decoded, dict):
                    events.append(decoded)
    return events


def _metering(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering.cli", *args],
        env=os.environ | stack.env | {"COLUMNS": "200"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_poison_records_are_dead_lettered_and_valid_ones_counted_exactly(stack: Stack) -> None:
    """Every bad kind among 3000 events: each dead-lettered once with its reason; valid ones exact."""
    valid = make_events(3000, seed=11)
    poison = _poison(valid[0])
    entries = [(orjson.dumps(e), e["userEmail"] or e["sourceIp"]) for e in valid]
    rng = random.Random(11)
    for data in poison:
        entries.insert(rng.randrange(len(entries)), (data, f"poison-{rng.random()}"))
    _put(stack, entries)

    consumer = stack.start_consumer()
    try:
        elapsed = wait_exact(stack, valid, consumer)
        print(
            f"\ncold start to exact counts of 3000 events among {len(poison)} poison records: {elapsed:.1f} s"
        )
        listed = _dead_letters(stack, len(poison))
        reasons = {r.letter.data: r.letter.reason for r in listed.records.values()}
        assert reasons == poison, consumer.log_tail()
        assert not listed.foreign
        assert all(r.letter.stream == stack.settings.stream_name for r in listed.records.values())

        # A record dead-lettered as FUTURE_TIMESTAMP whose time has come is re-driven and counted.
        soon = valid[1] | {"timestamp": _rfc3339(datetime.now(UTC) + MAX_CLOCK_SKEW + timedelta(seconds=8))}
        _put(stack, [(orjson.dumps(soon), soon["userEmail"] or soon["sourceIp"])])
        listed = _dead_letters(stack, len(poison) + 1)
        assert reasons | {orjson.dumps(soon): "FUTURE_TIMESTAMP"} == {
            r.letter.data: r.letter.reason for r in listed.records.values()
        }, "the near-future record must reach the consumer within 8 s"
        due = datetime.fromisoformat(soon["timestamp"]) - MAX_CLOCK_SKEW
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() + 0.5))

        shown = _metering(stack, "dlq", "list")
        assert shown.returncode == 0, shown.stderr
        assert all(reason in shown.stdout for reason in set(poison.values()))
        # A re-drive killed between its PutRecords and its deletes, then run again: the record is
        # put back twice, and counted once (it carries its origin; the consumer counts one origin once).
        crashed = _metering(
            stack, "dlq", "redrive", "--visibility-seconds", "2", METERING_FAULT="redrive-put@1:kill-self"
        )
        assert crashed.returncode == -9, crashed.stderr
        time.sleep(2.5)  # the crashed run's messages are visible again
        redrive = _metering(stack, "dlq", "redrive")
        assert redrive.returncode == 0, redrive.stderr
        assert f"re-drove 1 records; {len(poison)} still bad" in redrive.stdout, redrive.stdout

        wait_exact(stack, [*valid, soon], consumer)
        copies = [e for e in _stream_events(stack) if e.get("redriveOrigin")]
        assert len(copies) == 2 and len({e["redriveOrigin"] for e in copies}) == 1
        time.sleep(3)  # a second count of the copy would land within a flush or two
        wait_exact(stack, [*valid, soon], consumer)
        left = _dead_letters(stack, len(poison))
        assert {r.letter.data: r.letter.reason for r in left.records.values()} == poison
        assert len(left.messages) == len(poison), "still-bad records are kept once"
    finally:
        assert consumer.stop() == 0, consumer.log_tail()
