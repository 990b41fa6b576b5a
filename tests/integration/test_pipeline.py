"""The real MultiLangDaemon against the embedded emulator: exact counts, also through kill -9."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumer.testing import event
from tests.integration.conftest import Consumer, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FIELD = {"API_CALL": "calls", "API_AUTH_FAILED": "authFailures", "API_RATE_LIMITED": "rateLimited"}
USERS = [f"user{i}@example.com" for i in range(7)]


def _hour_boundary(now: datetime) -> datetime:
    """The latest hour boundary with 4 minutes of past on both sides (events must not be future)."""
    boundary = now.replace(minute=0, second=0, microsecond=0)
    return boundary if now - boundary >= timedelta(minutes=4) else boundary - timedelta(hours=1)


def make_events(count: int, seed: int) -> list[dict[str, Any]]:
    """Events across an hour boundary: several users (some hot), some without a user."""
    rng = random.Random(seed)
    boundary = _hour_boundary(datetime.now(UTC))
    events = []
    for _ in range(count):
        at = boundary + timedelta(milliseconds=rng.randint(-180_000, 179_999))
        email = None if rng.random() < 0.1 else rng.choices(USERS, weights=[8, 4, 2, 1, 1, 1, 1])[0]
        kind = rng.choices(list(FIELD), weights=[85, 10, 5])[0]
        events.append(event(kind, at=at, email=email, ip=f"192.0.2.{rng.randint(1, 5)}"))
    return events


def expected_items(events: list[dict[str, Any]]) -> dict[tuple[str, str], Counter[str]]:
    """Ground truth for every counter of every contract item (docs/table.md), computed
    from the events alone, independently of the consumer's code."""
    items: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    active: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        stamp, field, refused = e["timestamp"], FIELD[e["eventType"]], e["eventType"] != "API_CALL"
        minute, hour = f"MINUTE#{stamp[:16]}", f"HOUR#{stamp[:13]}"
        day, month = f"DAY#{stamp[:10]}", f"MONTH#{stamp[:7]}"
        method, endpoint = f"m_{e['httpMethod']}", f"e_{e['httpMethod']} {e['resourcePath']}"
        reason = f"r_{e['reason'] or '-'}"
        keys = [("GLOBAL", sk) for sk in (minute, hour, day, month)] + [(f"IP#{e['sourceIp']}", hour)]
        items[("GLOBAL", hour)].update([method, endpoint] + ([reason] if refused else []))
        if refused:
            items[(f"IP#{e['sourceIp']}", hour)][reason] += 1
        if refused and e["apiKeyId"]:
            keys.append((f"KEY#{e['apiKeyId']}", hour))
            items[(f"KEY#{e['apiKeyId']}", hour)][reason] += 1
        if e["userEmail"]:
            user = f"USER#{e['userEmail']}"
            keys += [(user, sk) for sk in ("TOTAL", hour, day, month)]
            # its minutes: counters of its hour item, `c07` the calls of minute 07, `a07`, `r07`
            items[(user, hour)].update([method, endpoint, f"{field[0]}{stamp[14:16]}"])
            for sk in (hour, day, month):
                active[("GLOBAL", sk)].add(user)
        for key in keys:
            items[key][field] += 1
    for key, users in active.items():
        items[key]["activeUsers"] = len(users)
    return items


def _counters(item: dict[str, Any]) -> dict[str, int]:
    """The counters of an item as DynamoDB returns it: every number but the bookkeeping (`expiresAt`)."""
    return {name: int(value["N"]) for name, value in item.items() if "N" in value and name != "expiresAt"}


def put_events(stack: Stack, events: list[dict[str, Any]], per_second: float | None = None) -> None:
    started = time.monotonic()
    for i in range(0, len(events), 250):
        chunk = events[i : i + 250]
        entries = [{"Data": orjson.dumps(e), "PartitionKey": e["userEmail"] or e["sourceIp"]} for e in chunk]
        reply = stack.kinesis.put_records(StreamName=stack.settings.stream_name, Records=entries)
        assert reply["FailedRecordCount"] == 0
        if per_second:
            time.sleep(max(0.0, started + (i + len(chunk)) / per_second - time.monotonic()))


def actual_items(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (i["pk"]["S"], i["sk"]["S"]): i
        for i in stack.table_items()
        if i["pk"]["S"] == "GLOBAL" or i["pk"]["S"].startswith(("USER#", "IP#", "KEY#"))
    }


def expected_seen(events: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """Each user's TOTAL item's (firstSeen, lastSeen): the earliest and latest of its timestamps."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for e in events:
        if e["userEmail"]:
            key, at = (f"USER#{e['userEmail']}", "TOTAL"), e["timestamp"]
            first, last = seen.get(key, (at, at))
            seen[key] = (min(first, at), max(last, at))
    return seen


def differences(stack: Stack, events: list[dict[str, Any]]) -> list[str]:
    return _differences(events, actual_items(stack))


def _differences(events: list[dict[str, Any]], actual: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    expected = expected_items(events)
    problems = [f"missing {key}" for key in expected.keys() - actual.keys()]
    problems += [f"unexpected {key}" for key in actual.keys() - expected.keys()]
    for key in expected.keys() & actual.keys():
        got, want = _counters(actual[key]), {name: count for name, count in expected[key].items() if count}
        if got != want:
            problems.append(f"{key}: got {got}, want {want}")
    for key, want_seen in expected_seen(events).items():
        item = actual.get(key, {})
        got_seen = (item.get("firstSeen", {}).get("S"), item.get("lastSeen", {}).get("S"))
        if key in actual and got_seen != want_seen:
            problems.append(f"{key}: firstSeen/lastSeen {got_seen}, want {want_seen}")
    return problems


# How long counting may stand still before a wait gives up: a slow machine gets the time it needs
# (the wait goes on while counters or checkpoints move), a stuck consumer fails within this.
STALL_SECONDS = 90.0


def wait_exact(
    stack: Stack, events: list[dict[str, Any]], consumer: Consumer, stall: float = STALL_SECONDS
) -> float:
    """Seconds until the table equals ground truth; fails once nothing moved for `stall` seconds."""
    started = moved = time.monotonic()
    progress: object = None
    problems: list[str] = []
    while time.monotonic() - moved < stall:
        assert consumer.process.poll() is None, f"consumer died:\n{consumer.log_tail()}"
        actual = actual_items(stack)
        problems = _differences(events, actual)
        if not problems:
            return time.monotonic() - started
        now_progress = (_counted(actual), sorted(stack.checkpoints().items()))
        if now_progress != progress:
            progress, moved = now_progress, time.monotonic()
        time.sleep(1)
    pytest.fail(f"not exact, and no progress for {stall} s: {problems[:10]}\n{consumer.log_tail()}")


def _counted(actual: dict[tuple[str, str], dict[str, Any]]) -> int:
    return sum(int(item.get(name, {}).get("N", "0")) for item in actual.values() for name in FIELD.values())


def wait_for_checkpoints(stack: Stack, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.isdigit() for c in stack.checkpoints().values()):
            return
        time.sleep(0.5)
    pytest.fail("no shard checkpointed in time")


def test_counts_are_exact_and_survive_kill_9(stack: Stack) -> None:
    """Thousands of events land exactly in every contract item, also after kill -9 and a restart."""
    first = make_events(3000, seed=1)
    put_events(stack, first)
    launched = time.monotonic()
    consumer = stack.start_consumer()
    while not actual_items(stack) and time.monotonic() - launched < 120:
        time.sleep(0.1)
    first_counts = time.monotonic() - launched
    cold_start = first_counts + wait_exact(stack, first, consumer)
    print(
        f"\ncold start: first counts written {first_counts:.1f} s after launch, "
        f"all 3000 events exact after {cold_start:.1f} s"
    )

    second = make_events(4000, seed=2)
    producer = threading.Thread(target=put_events, args=(stack, second, 800.0))
    producer.start()
    time.sleep(2.5)  # mid-stream, with flushes and checkpoints happening
    consumer.kill_hard()
    producer.join()

    restarted = stack.start_consumer("restarted")
    try:
        recovery = wait_exact(stack, first + second, restarted)
        print(f"restart after kill -9 to exact counts of 7000 events: {recovery:.1f} s")
        minute = next(v for k, v in actual_items(stack).items() if k[1].startswith("MINUTE#"))
        assert int(minute["expiresAt"]["N"]) > time.time() + 6 * 86400
    finally:
        assert restarted.stop() == 0, restarted.log_tail()
