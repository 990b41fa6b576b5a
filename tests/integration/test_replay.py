"""`metering replay` with the real daemon: a window rebuilt into a fresh table equals the live table."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_pipeline import (
    FIELD,
    actual_items,
    expected_items,
    make_events,
    put_events,
    wait_exact,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPLAY_APP = "complical-usage-replay-"
APPLICATION = re.compile(r"\(KCL application (\S+)\)")
SUMMARY = re.compile(r"^replayed .* into (\S+): (\d+) events counted, (\d+) items, ([\d.]+) s", re.MULTILINE)


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def events_over_ten_minutes(count: int, seed: int, now: datetime) -> list[dict[str, Any]]:
    """The pipeline's event mix, with timestamps spread over [now - 11 min, now - 1 min)."""
    rng = random.Random(seed)
    start = now - timedelta(minutes=11)
    events = make_events(count, seed)
    for event in events:
        event["timestamp"] = _stamp(start + timedelta(milliseconds=rng.randrange(600_000)))
    return events


def run_replay(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering.cli", "replay", *args],
        env=os.environ | stack.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def table_items(stack: Stack, table: str) -> dict[tuple[str, str], dict[str, Any]]:
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for page in stack.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items |= {(i["pk"]["S"], i["sk"]["S"]): i for i in page["Items"]}
    return items


def without_watermarks(item: dict[str, Any]) -> dict[str, Any]:
    """An item's contract attributes: the `w_<shard>` watermarks are per-application bookkeeping."""
    return {k: v for k, v in item.items() if not k.startswith("w_")}


def user_minutes(items: dict[tuple[str, str], Any], window: set[tuple[str, str]]) -> dict[Any, int]:
    """The minute counters (`c07`, `a07`, `r07`) of user hour items, for the (hour, minute) in `window`."""
    return {
        (pk, sk, name): int(value["N"])
        for (pk, sk), item in items.items()
        if pk.startswith("USER#")
        for name, value in item.items()
        if re.fullmatch(r"[car]\d\d", name) and (sk, name[1:]) in window
    }


def counters(item: dict[str, Any]) -> dict[str, int]:
    return {name: int(item.get(name, {}).get("N", "0")) for name in FIELD.values()}


def test_replay_of_a_window_into_a_fresh_table_equals_the_live_table(stack: Stack) -> None:
    """Every minute item of the window equals the live one, nothing outside it counts; a re-run is a no-op."""
    now = datetime.now(UTC)
    events = events_over_ten_minutes(2500, seed=7, now=now)
    start = (now - timedelta(minutes=11)).replace(second=0, microsecond=0) + timedelta(minutes=3)
    end = start + timedelta(minutes=4)
    inside = [e for e in events if _stamp(start) <= e["timestamp"] < _stamp(end)]
    put_events(stack, events)
    consumer = stack.start_consumer()
    try:
        wait_exact(stack, events, consumer)
        target = f"{stack.settings.analytics_table}-replay"
        args = ("--from", _stamp(start), "--to", _stamp(end), "--into", target)

        began = time.monotonic()
        first = run_replay(stack, *args)
        seconds = time.monotonic() - began
        assert first.returncode == 0, first.stderr[-4000:]
        summary = SUMMARY.search(first.stdout)
        assert summary, first.stdout
        assert int(summary.group(2)) == len(inside)
        print(f"\nreplay of {len(inside)} of {len(events)} events: {seconds:.1f} s")

        live, replayed = actual_items(stack), table_items(stack, target)
        window_minutes = {f"MINUTE#{(start + timedelta(minutes=m)):%Y-%m-%dT%H:%M}" for m in range(4)}
        live_minutes = {k: without_watermarks(v) for k, v in live.items() if k[1] in window_minutes}
        replayed_minutes = {
            k: without_watermarks(v) for k, v in replayed.items() if k[1].startswith("MINUTE#")
        }
        assert {k[0] for k in live_minutes} == {"GLOBAL"}  # a user's minutes: in its hour item
        assert replayed_minutes == live_minutes
        in_window = {(f"HOUR#{sk[7:20]}", sk[-2:]) for sk in window_minutes}
        assert user_minutes(replayed, in_window) == user_minutes(live, in_window) != {}

        # Every other item (user TOTAL, hours, source IPs) holds the window's events and nothing else.
        counted = {
            k: counters(v)
            for k, v in replayed.items()
            if k[0] == "GLOBAL" or k[0].startswith(("USER#", "IP#", "KEY#"))
        }
        want = {k: {name: c[name] for name in FIELD.values()} for k, c in expected_items(inside).items()}
        assert counted == want
        assert int(summary.group(3)) == len(want)

        # The same replay again, `--to` left out: it resumes the recorded window; nothing changes.
        again = run_replay(stack, "--from", _stamp(start), "--into", target)
        assert again.returncode == 0, again.stderr[-4000:]
        assert "resuming the replay of" in again.stderr
        after = table_items(stack, target)
        assert {k: counters(v) for k, v in after.items()} == {k: counters(v) for k, v in replayed.items()}
        # It resumed as the same KCL application, whose tables are its lease, coordinator and
        # worker-metrics ones (other tests' replays share the emulator: their names differ).
        application = APPLICATION.search(first.stdout)
        assert application and application.group(1).startswith(REPLAY_APP), first.stdout
        assert f"(KCL application {application.group(1)})" in again.stdout
        pages = stack.dynamodb.get_paginator("list_tables").paginate()  # the emulator may hold >100
        tables = {t for page in pages for t in page["TableNames"] if t.startswith(application.group(1))}
        assert tables == {application.group(1)} | {
            f"{application.group(1)}-{suffix}" for suffix in ("CoordinatorState", "WorkerMetricStats")
        }
    finally:
        assert consumer.stop() == 0, consumer.log_tail()
