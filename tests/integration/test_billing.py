"""Billing with the real daemon: day and month rollups and active users across a month boundary, and
the 90-day archive holding every event exactly once, through a kill -9 mid-flush and a replay."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reads import Table
from reads.usage import archived_events
from tests.integration.conftest import Stack
from tests.integration.test_faults import restart_until_exact
from tests.integration.test_pipeline import _differences, make_events, put_events
from tests.integration.test_replay import run_replay, table_items

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MAX_EVENT_AGE = timedelta(days=30)  # older events are dead-lettered as STALE_TIMESTAMP


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _month_boundary(now: datetime) -> datetime:
    """The latest start of a month (UTC) that is at least 4 minutes past."""
    boundary = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        boundary if now - boundary >= timedelta(minutes=4) else (boundary - timedelta(days=1)).replace(day=1)
    )


def _events_around(boundary: datetime, count: int, seed: int) -> list[dict[str, Any]]:
    """The pipeline's event mix, timed within 3 minutes either side of `boundary`."""
    rng = random.Random(seed)
    events = make_events(count, seed)
    for event in events:
        event["timestamp"] = _stamp(boundary + timedelta(milliseconds=rng.randint(-180_000, 179_999)))
    return events


def _archived(stack: Stack, table: str, events: list[dict[str, Any]], boundary: datetime) -> Counter[str]:
    """Each event id as often as the archive returns it, over every caller of `events`."""
    reads = Table(stack.dynamodb, table)
    callers = {f"USER#{e['userEmail']}" if e["userEmail"] else f"IP#{e['sourceIp']}" for e in events}
    start, end = boundary - timedelta(hours=1), boundary + timedelta(hours=1)
    return Counter(e["eventId"] for caller in callers for e in archived_events(reads, caller, start, end))


def _contract_items(items: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: v for k, v in items.items() if k[0] == "GLOBAL" or k[0].startswith(("USER#", "IP#", "KEY#"))}


def test_month_rollups_and_the_archive_are_exact_through_kill_9_and_replay(stack: Stack) -> None:
    now = datetime.now(UTC)
    boundary = _month_boundary(now)
    if now - boundary + timedelta(minutes=3) > MAX_EVENT_AGE - timedelta(hours=1):
        pytest.skip(f"{boundary:%Y-%m-%d} is too long ago: events before it would be stale (30 days)")
    events = _events_around(boundary, 3000, seed=41)
    assert {e["timestamp"][:7] for e in events} == {
        f"{boundary - timedelta(days=1):%Y-%m}",
        f"{boundary:%Y-%m}",
    }
    put_events(stack, events)

    # kill -9 of everything while a flush has written some archive pages and not others
    crashing = stack.start_consumer(METERING_FAULT="page-written@3:kill-group")
    assert crashing.process.wait(120) == -9, crashing.log_tail()
    restart_until_exact(stack, events, "kill -9 mid-flush, across a month boundary")
    archived = _archived(stack, stack.settings.analytics_table, events, boundary)
    assert archived == Counter(e["eventId"] for e in events)  # every event once, none twice

    # A replay of the whole window into a fresh table: the same rollups, active users and archive.
    target = f"{stack.settings.analytics_table}-replay"
    window = (
        "--from",
        _stamp(boundary - timedelta(minutes=3)),
        "--to",
        _stamp(boundary + timedelta(minutes=3)),
    )
    # Events a month old arrived just now: the replay reads the whole stream, counting the window.
    replay = run_replay(stack, *window, "--into", target, "--whole-stream")
    assert replay.returncode == 0, replay.stderr[-4000:]
    assert _differences(events, _contract_items(table_items(stack, target))) == []
    assert _archived(stack, target, events, boundary) == archived
