"""API Gateway's access logs through the emulator's CloudWatch Logs subscription, beside the authorizer's
events, counted by the real daemon: every endpoint item equals ground truth through a kill -9 mid-flush
and a replay, and the latency query reads it back without a Scan. Lines are written as API Gateway has
been seen to write them, a caller's quotes unescaped (DataBiosphere/azul#4348), some with odd paths and
with `-` for status or latency: every one still counts."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from consumer.core.latency import bucket
from consumer.testing import access_log_line
from contract.access_logs import line
from contract.environment import access_log_group
from reads import Table
from reads.analytics import endpoint_stats
from tests.functional.test_analytics_reads import GuardedClient
from tests.integration.conftest import Stack
from tests.integration.test_faults import wait_for
from tests.integration.test_pipeline import put_events, wait_exact
from tests.integration.test_replay import events_over_ten_minutes, run_replay, table_items

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROUTES = [("GET", "/items/{id}", 40), ("POST", "/orders", 180), ("GET", "/v1/usage", 25)]


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_lines(count: int, seed: int, now: datetime) -> list[dict[str, str]]:
    """Access-log lines over [now - 10 min, now - 1 min): latencies per route, some 4xx and 5xx."""
    rng = random.Random(seed)
    lines = []
    for n in range(count):
        method, route, median = rng.choice(ROUTES)
        at = now - timedelta(minutes=10) + timedelta(milliseconds=rng.randrange(540_000))
        status = rng.choices(["200", "404", "401", "503"], weights=[85, 7, 5, 3])[0]
        integration = "-" if status == "401" else str(max(1, round(rng.lognormvariate(0, 0.7) * median)))
        overhead = rng.randint(2, 30)
        latency = overhead + (0 if integration == "-" else int(integration))
        lines.append(access_log_line(at, httpMethod=method, resourcePath=route, status=status,
                                     responseLatency=str(latency), integrationLatency=integration,
                                     requestId=str(uuid.uuid4())))  # fmt: skip
        if n % 7 == 0:  # what any caller can send: quotes, backslashes, another field spelled out
            lines[-1]["path"] = '/prod/items/a"b\\c","status":"500'
        if n % 11 == 0:
            lines[-1][rng.choice(["status", "responseLatency"])] = "-"
    return lines


def put_lines(stack: Stack, lines: list[dict[str, str]]) -> None:
    """Through CloudWatch Logs, whose subscription (made by `metering provision`) feeds the stream."""
    logs: Any = boto3.client("logs", region_name="us-east-1")
    group, stream = access_log_group(stack.settings.environment), f"test-{uuid.uuid4().hex}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    ordered = sorted(lines, key=lambda fields: int(fields["requestTimeEpoch"]))
    for start in range(0, len(ordered), 100):
        batch = [
            {"timestamp": int(f["requestTimeEpoch"]), "message": line(f, escape=False)}
            for f in ordered[start : start + 100]
        ]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)


def expected_endpoints(lines: list[dict[str, str]]) -> dict[tuple[str, str], Counter[str]]:
    """Every counter of every ENDPOINT item, from the lines alone (docs/table.md)."""
    items: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for f in lines:
        at = datetime.fromtimestamp(int(f["requestTimeEpoch"]) / 1000, UTC)
        pk = f"ENDPOINT#{f['httpMethod']} {f['resourcePath']}"
        for sk in (f"MINUTE#{at:%Y-%m-%dT%H:%M}", f"HOUR#{at:%Y-%m-%dT%H}"):
            item = items[(pk, sk)]
            item["responses"] += 1  # a `-` costs its counter only
            if f["status"] != "-":
                item[f"s{f['status'][0]}xx"] += 1
            if f["responseLatency"] != "-":
                latency = int(f["responseLatency"])
                item.update({f"l_{bucket(latency)}": 1})
                item["latencySum"] += latency
            if f["integrationLatency"] != "-":
                integration = int(f["integrationLatency"])
                item.update({"integrations": 1, f"il_{bucket(integration)}": 1})
                item["integrationLatencySum"] += integration
    return items


def endpoint_items(items: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], Counter[str]]:
    return {
        key: Counter({k: int(v["N"]) for k, v in item.items() if "N" in v and k != "expiresAt"})
        for key, item in items.items()
        if key[0].startswith("ENDPOINT#")
    }


def test_access_logs_count_exactly_through_kill_9_and_replay(stack: Stack) -> None:
    now = datetime.now(UTC)
    events = events_over_ten_minutes(1500, seed=52, now=now)
    lines = make_lines(1200, seed=51, now=now)
    put_events(stack, events)
    put_lines(stack, lines)
    want = expected_endpoints(lines)

    crashing = stack.start_consumer(METERING_FAULT="item-written@40:kill-group")
    assert crashing.process.wait(120) == -9, crashing.log_tail()
    restarted = stack.start_consumer("restarted")
    try:
        wait_exact(stack, events, restarted)
        wait_for(lambda: endpoint_items(table_items(stack, stack.settings.analytics_table)) == want, 120,
                 "every endpoint item equal to ground truth")  # fmt: skip

        guard = GuardedClient(boto3.client("dynamodb", region_name="us-east-1"))
        start, end = now - timedelta(minutes=11), now
        report = endpoint_stats(Table(guard, stack.settings.analytics_table), start, end)
        for stats in report.endpoints:
            mine = [f for f in lines if f"{f['httpMethod']} {f['resourcePath']}" == stats.endpoint]
            assert stats.responses == len(mine)
            assert stats.statuses["5xx"] == sum(f["status"] == "503" for f in mine)
            assert stats.latency_sum_ms == sum(
                int(f["responseLatency"]) for f in mine if f["responseLatency"] != "-"
            )
        assert guard.scans == [] and sum(s.responses for s in report.endpoints) == len(lines)

        target = f"{stack.settings.analytics_table}-replay"
        began = time.monotonic()
        replay = run_replay(stack, "--from", _stamp(start), "--to", _stamp(end), "--into", target)
        assert replay.returncode == 0, replay.stderr[-4000:]
        print(
            f"\nreplay of {len(events)} events and {len(lines)} responses: {time.monotonic() - began:.1f} s"
        )
        assert endpoint_items(table_items(stack, target)) == want
    finally:
        assert restarted.stop() == 0, restarted.log_tail()
