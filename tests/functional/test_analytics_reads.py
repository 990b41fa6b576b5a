"""Analytics reads and `metering latency | top | security` against ground truth.

Usage events and access-log lines go through the real record processor and DynamoDB sink (moto),
over two shards and many flushes; the test computes what every read should return from the events
themselves, and every read goes through a client that fails on any Scan and counts its queries.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
import structlog
from moto import mock_aws
from rich.console import Console

from consumer import aws as consumer_aws
from consumer.core.latency import RELATIVE_ACCURACY, bucket, quantiles
from consumer.processor import UsageRecordProcessor
from consumer.settings import ConsumerSettings
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.testing import (
    FakeClock,
    RecordingDeadLetters,
    ScriptedDaemon,
    access_log_line,
    event,
    log_envelope,
    subscription_record,
)
from contract.table import analytics_table_spec
from metering.commands import analytics
from metering.commands.reconcile import print_reconciliation, reconcile_report
from metering.errors import USAGE_ERROR, CommandError
from reads import Table
from reads.analytics import (
    HOUR,
    MINUTE,
    endpoint_stats,
    ip_hours,
    key_refusals,
    refusals_by_hour,
    security,
    top_endpoints,
    top_methods,
    user_usage,
)
from reads.completeness import reconcile

SHARDS = ("shardId-000000000000", "shardId-000000000001")
ARRIVAL = datetime(2026, 11, 25, tzinfo=UTC)  # consumer.testing's records arrive then
SETTINGS = ConsumerSettings.from_env({"ENVIRONMENT": "ft"})
ROUTES = [
    ("GET", "/items/{id}", "/items/42"),
    ("GET", "/items", "/items"),
    ("POST", "/items", "/items"),
    ("DELETE", "/items/{id}", "/items/7"),
    ("GET", "/reports/{id}", "/reports/3"),
]
USERS = {f"{name}@example.com": f"10.0.0.{n}" for n, name in enumerate(("alice", "bob", "carol", "dave"), 1)}
KINDS = {"API_CALL": "calls", "API_AUTH_FAILED": "authFailures", "API_RATE_LIMITED": "rateLimited"}
# The designed source IPs: (hour, IP) -> the rules the default rules must mark it with.
MARKED = {
    ("2026-11-24T11", "203.0.113.66"): ["AUTH_FAILURES", "FAILURE_RATIO"],  # 130 failures of 130
    ("2026-11-24T12", "198.51.100.26"): ["FAILURE_RATIO"],  # 26 failures of 50 requests
    ("2026-11-24T13", "198.51.100.99"): ["KEYS_TRIED"],  # 6 keys
    ("2026-11-24T12", "192.0.2.10"): ["RATE_LIMITED"],  # 100 rate limited
}
# The gateway response API Gateway logs with some statuses: two answered before the authorizer ran.
GATEWAY_RESPONSES = {"429": "THROTTLED", "403": "WAF_FILTERED", "500": "AUTHORIZER_FAILURE"}
# ...and one short of each boundary: 99 failures, 25 of 50, 5 keys, 99 rate limited: unmarked.
UNMARKED = ("203.0.113.67", "198.51.100.25", "198.51.100.55", "192.0.2.11")


def _at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, 24, hour, minute, second, tzinfo=UTC)


# --- ground truth: the events ------------------------------------------------------------------------


def _usage_events(rng: random.Random) -> list[dict[str, Any]]:
    events = []
    refusals = {
        "API_AUTH_FAILED": ["REVOKED_KEY"],
        "API_RATE_LIMITED": ["RATE_LIMIT_SECOND", "RATE_LIMIT_MINUTE"],
    }
    for _ in range(400):  # every user from its own address, 09:00-15:00
        email = rng.choice(list(USERS))
        method, resource, path = rng.choice(ROUTES)
        kind = rng.choices(list(KINDS), [90, 4, 6])[0]
        events.append(
            event(
                kind,
                at=_at(9) + timedelta(seconds=rng.randrange(6 * 3600)),
                email=email,
                ip=USERS[email],
                apiKeyId=f"key_{email[:3]}",
                reason=rng.choice(refusals[kind]) if kind in refusals else None,
                httpMethod=method,
                resourcePath=resource,
                path=path,
            )
        )

    def burst(
        ip: str, hour: int, count: int, kind: str, reason: str | None, email: str | None, **more: Any
    ) -> None:
        key = f"key_{email.split('@')[0]}" if email else None
        for n in range(count):
            at = _at(hour, n * 7 % 60, n % 60)
            events.append(event(kind, at=at, email=email, ip=ip, reason=reason, apiKeyId=key, **more))

    erin = "erin@example.com"
    burst("203.0.113.66", 11, 120, "API_AUTH_FAILED", "UNKNOWN_KEY", None)
    burst(
        "203.0.113.66",
        11,
        10,
        "API_AUTH_FAILED",
        "MISSING_KEY",
        None,
        httpMethod="POST",
        resourcePath="/items",
    )
    burst("203.0.113.67", 11, 99, "API_AUTH_FAILED", "UNKNOWN_KEY", None)
    burst("203.0.113.67", 11, 101, "API_CALL", None, erin)
    burst("198.51.100.26", 12, 26, "API_AUTH_FAILED", "MALFORMED_KEY", None)
    burst("198.51.100.26", 12, 24, "API_CALL", None, erin)
    burst("198.51.100.25", 12, 25, "API_AUTH_FAILED", "MALFORMED_KEY", None)
    burst("198.51.100.25", 12, 25, "API_CALL", None, erin)
    for n in range(6):
        burst("198.51.100.99", 13, 2, "API_AUTH_FAILED", "REVOKED_KEY", f"victim{n}@example.com")
    for n in range(5):
        burst("198.51.100.55", 13, 2, "API_AUTH_FAILED", "REVOKED_KEY", f"victim{n}@example.com")
    burst("192.0.2.10", 12, 100, "API_RATE_LIMITED", "RATE_LIMIT_SECOND", "bob@example.com")
    burst("192.0.2.10", 12, 30, "API_CALL", None, "bob@example.com")
    burst("192.0.2.11", 12, 99, "API_RATE_LIMITED", "RATE_LIMIT_MINUTE", "carol@example.com")
    return events


def _access_lines(rng: random.Random) -> list[dict[str, str]]:
    lines = []
    statuses = ["200"] * 12 + ["201", "204", "304", "400", "403", "404", "429", "500", "502", "503", "101"]
    for _ in range(500):
        method, resource, path = rng.choice(ROUTES)
        latency = 0 if rng.random() < 0.03 else int(rng.lognormvariate(3.5, 1.0))
        integration = "-" if rng.random() < 0.1 else str(max(0, latency - rng.randrange(12)))
        lines.append(
            access_log_line(
                at=_at(9) + timedelta(seconds=rng.randrange(6 * 3600), milliseconds=rng.randrange(1000)),
                httpMethod=method,
                resourcePath=resource,
                path=path,
                status=rng.choice(statuses),
                responseLatency=str(latency),
                integrationLatency=integration,
            )
        )
        lines[-1]["errorType"] = GATEWAY_RESPONSES.get(lines[-1]["status"], "-")
    return lines


def _time(item: dict[str, Any]) -> datetime:
    if "requestTimeEpoch" in item:
        return datetime.fromtimestamp(int(item["requestTimeEpoch"]) / 1000, UTC)
    return datetime.fromisoformat(item["timestamp"].replace("Z", "+00:00"))


def _endpoint(item: dict[str, Any]) -> str:
    return f"{item['httpMethod']} {item['resourcePath']}"


# --- the table, written by the real consumer -----------------------------------------------------


@dataclass
class GuardedClient:
    """A DynamoDB client that fails on any Scan (however issued: method, paginator) and counts queries."""

    client: Any
    scans: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.client.meta.events.register("before-call.dynamodb", self._before)

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls[model.name] += 1
        if model.name == "Scan":
            self.scans.append(params)
            raise AssertionError(f"a Scan was issued: {params}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@dataclass
class World:
    table: Table
    guard: GuardedClient
    events: list[dict[str, Any]]
    lines: list[dict[str, str]]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "COLUMNS": "220",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            writer = boto3.client("dynamodb", region_name="us-east-1")
            writer.create_table(**analytics_table_spec(SETTINGS.analytics_table))
            rng = random.Random(10)
            events, lines = _usage_events(rng), _access_lines(rng)
            _count(writer, events, lines, rng)
            guard = GuardedClient(boto3.client("dynamodb", region_name="us-east-1"))
            patch.setattr(consumer_aws, "client", lambda service, region, *_, **__: guard)
            yield World(Table(guard, SETTINGS.analytics_table), guard, events, lines)


def _count(
    client: Any, events: list[dict[str, Any]], lines: list[dict[str, str]], rng: random.Random
) -> None:
    """Every event and line through the record processor, over two shards, in many small flushes."""
    records = [orjson.dumps(e) for e in events]
    records += [
        subscription_record(log_envelope(*(json.dumps(line) for line in lines[i : i + 25])))
        for i in range(0, len(lines), 25)
    ]
    rng.shuffle(records)
    for n, shard in enumerate(SHARDS):
        mine = list(enumerate(records[n :: len(SHARDS)], 1))
        sink = DynamoDBSink(client, SETTINGS.analytics_table, "app", retry_for=0, concurrency=4)
        dead_letters = RecordingDeadLetters()
        processor = UsageRecordProcessor(
            sink,
            dead_letters,
            structlog.get_logger("test"),
            flush_interval=0.0,  # every poll flushes: items add up over many flushes
            monotonic=FakeClock(),
            now=lambda: ARRIVAL,
        )
        daemon = ScriptedDaemon().initialize(shard)
        for start in range(0, len(mine), 100):
            daemon.records(mine[start : start + 100])
        daemon.shutdown_requested().run(processor)
        sink.close()
        assert dead_letters.sent == [] and daemon.last_checkpoint == str(len(mine))


@pytest.fixture
def guard(world: World) -> Iterator[GuardedClient]:
    world.guard.calls.clear()
    yield world.guard
    assert world.guard.scans == [], "no read may Scan"
    assert set(world.guard.calls) <= {"Query", "GetItem", "BatchGetItem"}, world.guard.calls


# --- ground truth: what each read must say -----------------------------------------------------------


def _lines_in(world: World, start: datetime, end: datetime) -> list[dict[str, str]]:
    return [line for line in world.lines if start <= _time(line) < end]


def _events_in(world: World, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [e for e in world.events if start <= _time(e) < end]


def _expected_endpoint(name: str, lines: list[dict[str, str]]) -> dict[str, Any]:
    latencies = [int(line["responseLatency"]) for line in lines]
    integration = [int(line["integrationLatency"]) for line in lines if line["integrationLatency"] != "-"]
    statuses = {f"{c}xx": sum(1 for line in lines if line["status"][0] == c) for c in "12345"}
    return {
        "endpoint": name,
        "responses": len(lines),
        "statuses": statuses,
        "error_rate_4xx": statuses["4xx"] / len(lines),
        "error_rate_5xx": statuses["5xx"] / len(lines),
        "latency_ms": {"mean": sum(latencies) / len(latencies), **_true_quantiles(latencies)},
        "integrations": len(integration),
        "integration_latency_ms": {
            "mean": sum(integration) / len(integration) if integration else None,
            **_true_quantiles(integration),
        },
    }


def _true_quantiles(values: list[int]) -> dict[str, float | None]:
    """Quantiles of the merged histogram, each checked within DDSketch's bound of the exact one."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    read = quantiles(Counter(bucket(v) for v in values), (0.5, 0.95, 0.99))
    ordered = sorted(values)
    for q, value in read.items():
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(value - exact) <= RELATIVE_ACCURACY * exact + 1e-9, (q, value, exact)
    return {"p50": read[0.5], "p95": read[0.95], "p99": read[0.99]}


def _expected_latency(
    world: World, read_from: datetime, read_to: datetime, endpoint: str | None = None
) -> dict[str, Any]:
    lines = _lines_in(world, read_from, read_to)
    if endpoint is not None:
        lines = [line for line in lines if _endpoint(line) == endpoint]
    by_endpoint: dict[str, list[dict[str, str]]] = defaultdict(list)
    for line in lines:
        by_endpoint[_endpoint(line)].append(line)
    rows = [_expected_endpoint(name, its) for name, its in by_endpoint.items()]
    rows.sort(key=lambda row: (-row["responses"], row["endpoint"]))
    return {"endpoints": rows, "all": _expected_endpoint("*", lines)}


def _counters(events: list[dict[str, Any]], key: Any) -> dict[Any, Counter[str]]:
    grouped: dict[Any, Counter[str]] = defaultdict(Counter)
    for e in events:
        grouped[key(e)][KINDS[e["eventType"]]] += 1
        if e["reason"] is not None:
            grouped[key(e)]["r_" + e["reason"]] += 1
    return grouped


def _hour(e: dict[str, Any]) -> str:
    return e["timestamp"][:13]


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _window(
    start: datetime, end: datetime, resolution: str, read_from: datetime, read_to: datetime, buckets: int
) -> dict[str, Any]:
    return {
        "from": _stamp(start),
        "to": _stamp(end),
        "resolution": resolution,
        "read_from": _stamp(read_from),
        "read_to": _stamp(read_to),
        "buckets": buckets,
    }


# --- running a command -----------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="metering")
    analytics.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    capsys.readouterr()
    assert args.handler(args, SETTINGS) == 0
    return capsys.readouterr().out


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_run(capsys, *argv, "--json"))
    return document


# A window of 2 h 50 min, cut mid-hour at both ends: read as the hours 10, 11, 12 and 13.
START, END = _at(10, 20), _at(13, 10)
HOURS_FROM, HOURS_TO = _at(10), _at(14)
WINDOW = ("--from", "2026-11-24T10:20:00Z", "--to", "2026-11-24T13:10:00Z")


# --- latency -------------------------------------------------------------------------------------------


def test_latency_over_hours_equals_ground_truth(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A window of 2 h or more reads ENDPOINT hour items: one index query per hour it touches,
    then its items (a BatchGetItem per 100)."""
    expected = _expected_latency(world, HOURS_FROM, HOURS_TO)
    assert _json(capsys, "latency", *WINDOW) == {
        "window": _window(START, END, HOUR, HOURS_FROM, HOURS_TO, 4),
        **expected,
    }
    assert guard.calls == {"Query": 4, "BatchGetItem": 4}


def test_latency_under_two_hours_reads_minutes(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shorter window reads minute items, cut to the minute: one index query per minute it
    touches, then its items."""
    start, end = _at(11, 30, 30), _at(12, 15, 10)
    expected = _expected_latency(world, _at(11, 30), _at(12, 16))
    document = _json(capsys, "latency", "--from", "2026-11-24T11:30:30Z", "--to", "2026-11-24T12:15:10Z")
    assert document == {"window": _window(start, end, MINUTE, _at(11, 30), _at(12, 16), 46), **expected}
    assert guard.calls == {"Query": 46, "BatchGetItem": 35}  # minutes without traffic list no items


def test_latency_of_one_endpoint_is_one_key_query(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """--endpoint reads that endpoint's own hour or minute items: one key query, whatever the window."""
    expected = _expected_latency(world, HOURS_FROM, HOURS_TO, "GET /items/{id}")
    document = _json(capsys, "latency", "--endpoint", "GET /items/{id}", *WINDOW)
    assert document["endpoints"] == expected["endpoints"] and len(document["endpoints"]) == 1
    assert document["all"] == expected["all"] | {"endpoint": "*"}
    assert guard.calls == {"Query": 1}
    minutes = _json(
        capsys,
        "latency",
        "--endpoint",
        "GET /items/{id}",
        "--from",
        "2026-11-24T11:05:00Z",
        "--to",
        "2026-11-24T11:35:00Z",
    )
    assert (
        minutes["endpoints"]
        == _expected_latency(world, _at(11, 5), _at(11, 35), "GET /items/{id}")["endpoints"]
    )
    assert guard.calls == {"Query": 2}


def test_endpoint_stats_merge_the_histograms_exactly(world: World, guard: GuardedClient) -> None:
    """The read returns each endpoint's histogram buckets: the counts of the latencies' buckets, added up."""
    report = endpoint_stats(world.table, START, END)
    assert report.coverage.resolution == HOUR and report.coverage.buckets[0] == "HOUR#2026-11-24T10"
    lines = _lines_in(world, HOURS_FROM, HOURS_TO)
    for stats in report.endpoints:
        its = [line for line in lines if _endpoint(line) == stats.endpoint]
        assert stats.latency == Counter(bucket(int(line["responseLatency"])) for line in its)
        assert stats.integration_latency == Counter(
            bucket(int(line["integrationLatency"])) for line in its if line["integrationLatency"] != "-"
        )
        assert stats.latency_sum_ms == sum(int(line["responseLatency"]) for line in its)
    assert sum(s.responses for s in report.endpoints) == report.overall.responses == len(lines)
    minutes = endpoint_stats(world.table, START, END, endpoint="GET /items", resolution=MINUTE)
    exact = [
        int(line["responseLatency"])
        for line in _lines_in(world, START, END)
        if _endpoint(line) == "GET /items"
    ]
    assert minutes.coverage.read_from == START and minutes.coverage.read_to == END
    assert (minutes.overall.responses, minutes.overall.latency_sum_ms) == (len(exact), sum(exact))
    assert guard.calls == {"Query": 4 + 1, "BatchGetItem": 4}  # an index query per hour, then one key query


def test_an_empty_window_of_data_reads_as_no_responses(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Buckets without items read as nothing: no endpoints, no quantiles, no error rates."""
    document = _json(capsys, "latency", "--from", "2026-11-20T10:00:00Z", "--to", "2026-11-20T10:05:00Z")
    assert document["endpoints"] == []
    assert document["all"]["responses"] == 0 and document["all"]["latency_ms"] == {
        "mean": None,
        "p50": None,
        "p95": None,
        "p99": None,
    }


# --- top -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["endpoints", "methods"])
def test_top_endpoints_and_methods_equal_ground_truth(
    what: str, world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Requests (refused ones included) per endpoint or method in the window's hours: one key query."""
    events = _events_in(world, HOURS_FROM, HOURS_TO)
    counts = Counter(_endpoint(e) if what == "endpoints" else e["httpMethod"] for e in events)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert _json(capsys, "top", what, *WINDOW, "--limit", "100") == {
        "window": _window(START, END, HOUR, HOURS_FROM, HOURS_TO, 4),
        "what": what,
        "requests": len(events),
        "count": len(ranked),
        "top": [{"name": name, "requests": n, "share": n / len(events)} for name, n in ranked],
    }
    assert guard.calls == {"Query": 1}
    reading = (top_endpoints if what == "endpoints" else top_methods)(world.table, START, END)
    assert [(r.name, r.count) for r in reading.ranked] == ranked
    assert _json(capsys, "top", what, *WINDOW, "--limit", "2")["top"] == [
        {"name": name, "requests": n, "share": n / len(events)} for name, n in ranked[:2]
    ]


def test_top_users_equal_ground_truth(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every user's counts over the window's hours: one index query per hour, ranked by calls."""
    per_user = _counters(
        [e for e in _events_in(world, HOURS_FROM, HOURS_TO) if e["userEmail"]], lambda e: e["userEmail"]
    )
    users = [
        {
            "email": email,
            "calls": c["calls"],
            "auth_failures": c["authFailures"],
            "rate_limited": c["rateLimited"],
            "requests": c["calls"] + c["authFailures"] + c["rateLimited"],
        }
        for email, c in per_user.items()
    ]
    users.sort(key=lambda u: (-u["calls"], -u["requests"], u["email"]))
    document = _json(capsys, "top", "users", *WINDOW, "--limit", "3")
    assert document == {
        "window": _window(START, END, HOUR, HOURS_FROM, HOURS_TO, 4),
        "what": "users",
        "requests": sum(u["requests"] for u in users),
        "count": len(users),
        "top": users[:3],
    }
    assert guard.calls == {"Query": 4, "BatchGetItem": 4}
    read = user_usage(world.table, START, END).users
    assert [(u.email, u.calls, u.auth_failures, u.rate_limited) for u in read] == [
        (u["email"], u["calls"], u["auth_failures"], u["rate_limited"]) for u in users
    ]


# --- security -------------------------------------------------------------------------------------------


def _expected_security(
    world: World, rules_marked: dict[tuple[str, str], list[str]], limit: int
) -> dict[str, Any]:
    events = _events_in(world, HOURS_FROM, HOURS_TO)
    refused = [e for e in events if e["eventType"] != "API_CALL"]
    ip_hours = _counters(events, lambda e: (_hour(e), e["sourceIp"]))
    keys_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    users_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        if e["apiKeyId"]:
            keys_of[(_hour(e), e["sourceIp"])].add(e["apiKeyId"])
        if e["userEmail"]:
            users_of[(_hour(e), e["sourceIp"])].add(e["userEmail"])

    def reasons(c: Counter[str]) -> dict[str, int]:
        return {name[2:]: n for name, n in c.items() if name.startswith("r_")}

    suspicious: list[dict[str, Any]] = [
        {
            "ip": ip,
            "hour": f"{hour}:00:00.000Z",
            "rules": rules_marked[(hour, ip)],
            "calls": ip_hours[(hour, ip)]["calls"],
            "auth_failures": ip_hours[(hour, ip)]["authFailures"],
            "rate_limited": ip_hours[(hour, ip)]["rateLimited"],
            "reasons": reasons(ip_hours[(hour, ip)]),
            "keys_tried": sorted(keys_of[(hour, ip)]),
            "users_seen": sorted(users_of[(hour, ip)]),
        }
        for hour, ip in rules_marked
    ]
    suspicious.sort(
        key=lambda s: (-len(s["rules"]), -s["auth_failures"], -s["rate_limited"], s["hour"], s["ip"])
    )
    per_ip = _counters(events, lambda e: e["sourceIp"])
    ips = [
        {
            "ip": ip,
            "auth_failures": c["authFailures"],
            "rate_limited": c["rateLimited"],
            "calls": c["calls"],
            "reasons": reasons(c),
            "keys_tried": sorted({e["apiKeyId"] for e in events if e["sourceIp"] == ip and e["apiKeyId"]}),
            "users_seen": sorted({e["userEmail"] for e in events if e["sourceIp"] == ip and e["userEmail"]}),
            "hours": len({_hour(e) for e in events if e["sourceIp"] == ip}),
        }
        for ip, c in per_ip.items()
        if c["authFailures"] + c["rateLimited"]
    ]
    ips.sort(key=lambda i: (-i["auth_failures"], -i["rate_limited"], i["ip"]))
    per_key = _counters([e for e in refused if e["apiKeyId"]], lambda e: e["apiKeyId"])
    keys = [
        {
            "key_id": key,
            "auth_failures": c["authFailures"],
            "rate_limited": c["rateLimited"],
            "reasons": reasons(c),
        }
        for key, c in per_key.items()
    ]
    keys.sort(key=lambda k: (-k["auth_failures"], -k["rate_limited"], k["key_id"]))
    by_hour = {
        hour: Counter(e["reason"] for e in refused if _hour(e) == hour)
        for hour in ("2026-11-24T1" + h for h in "0123")
    }
    per_user = _counters([e for e in events if e["userEmail"]], lambda e: e["userEmail"])
    users = [
        {
            "email": email,
            "calls": c["calls"],
            "auth_failures": c["authFailures"],
            "rate_limited": c["rateLimited"],
            "requests": c["calls"] + c["authFailures"] + c["rateLimited"],
        }
        for email, c in per_user.items()
        if c["rateLimited"]
    ]
    users.sort(key=lambda u: (-u["rate_limited"], -u["calls"], u["email"]))
    everything = Counter(e["reason"] for e in refused)
    return {
        "suspicious_ip_hours": len(suspicious),
        "suspicious_ips": suspicious[:limit],
        "failing_ips": len(ips),
        "top_failing_ips": ips[:limit],
        "failing_keys": len(keys),
        "top_failing_keys": keys[:limit],
        "refusals_by_reason": dict(sorted(everything.items(), key=lambda kv: (-kv[1], kv[0]))),
        "refusals_by_hour": [
            {"hour": f"{hour}:00:00.000Z", "total": sum(c.values()), "reasons": dict(c)}
            for hour, c in by_hour.items()
        ],
        "rate_limited_users": len(users),
        "top_rate_limited_users": users[:limit],
    }


def test_security_equals_ground_truth(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each designed IP is marked with exactly its rules, one short of a boundary is not; every list is
    the events' own count; three index queries per hour and one key query."""
    document = _json(capsys, "security", *WINDOW, "--limit", "100")
    rules = document.pop("rules"), document.pop("rule_descriptions")
    assert document == {
        "window": _window(START, END, HOUR, HOURS_FROM, HOURS_TO, 4),
        **_expected_security(world, MARKED, 100),
    }
    assert rules[0] == {
        "auth_failures_per_hour": 100,
        "failure_ratio": 0.5,
        "min_requests": 50,
        "keys_tried": 5,
        "rate_limited_per_hour": 100,
    }
    assert not {row["ip"] for row in document["suspicious_ips"]} & set(UNMARKED)
    assert guard.calls == {"Query": 3 * 4 + 1, "BatchGetItem": 3 * 4}


def test_security_reads_rules_from_a_file(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Lower thresholds mark the IPs one short of the defaults too; a null turns a rule off."""
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "auth_failures_per_hour": 99,
                "failure_ratio": None,
                "keys_tried": 4,
                "rate_limited_per_hour": 99,
            }
        )
    )
    marked = {
        ("2026-11-24T11", "203.0.113.66"): ["AUTH_FAILURES"],
        ("2026-11-24T11", "203.0.113.67"): ["AUTH_FAILURES"],
        ("2026-11-24T13", "198.51.100.99"): ["KEYS_TRIED"],
        ("2026-11-24T13", "198.51.100.55"): ["KEYS_TRIED"],
        ("2026-11-24T12", "192.0.2.10"): ["RATE_LIMITED"],
        ("2026-11-24T12", "192.0.2.11"): ["RATE_LIMITED"],
    }
    document = _json(capsys, "security", *WINDOW, "--rules", str(rules), "--limit", "3")
    expected = _expected_security(world, marked, 3)
    assert document["suspicious_ips"] == expected["suspicious_ips"] and document["suspicious_ip_hours"] == 6
    assert (
        document["top_failing_keys"] == expected["top_failing_keys"]
        and len(document["top_failing_keys"]) == 3
    )
    assert document["rule_descriptions"]["FAILURE_RATIO"] == "off"


def test_security_reads_each_return_ground_truth(world: World, guard: GuardedClient) -> None:
    """The read functions alone: IP hour items with their sets, refusals per key and per hour."""
    expected = _expected_security(world, MARKED, 1000)
    hours = ip_hours(world.table, START, END)
    designed = {(h.hour.strftime("%Y-%m-%dT%H"), h.ip): h for h in hours}
    stuffer = designed[("2026-11-24T13", "198.51.100.99")]
    assert stuffer.keys_tried == {f"key_victim{n}" for n in range(6)}
    assert stuffer.users_seen == {f"victim{n}@example.com" for n in range(6)}
    assert (stuffer.calls, stuffer.auth_failures, dict(stuffer.reasons)) == (0, 12, {"REVOKED_KEY": 12})
    assert [
        (k.key_id, k.auth_failures, k.rate_limited, dict(k.reasons))
        for k in key_refusals(world.table, START, END)
    ] == [
        (k["key_id"], k["auth_failures"], k["rate_limited"], k["reasons"])
        for k in expected["top_failing_keys"]
    ]
    assert [dict(h.reasons) for h in refusals_by_hour(world.table, START, END)] == [
        h["reasons"] for h in expected["refusals_by_hour"]
    ]
    report = security(world.table, START, END)
    assert report.ip_hours == hours and [i.ip for i in report.ips if i.refused] == [
        i["ip"] for i in expected["top_failing_ips"]
    ]


# --- tables, windows, errors -------------------------------------------------------------------------


def test_each_command_prints_its_tables(
    world: World, guard: GuardedClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json, each command prints its window line and its tables."""
    latency = _run(capsys, "latency", *WINDOW)
    assert (
        "Latency and errors per endpoint" in latency
        and "GET /items/{id}" in latency
        and "all endpoints" in latency
    )
    window = "Window 2026-11-24 10:20 to 2026-11-24 13:10 UTC, read as 4 hour items: 2026-11-24 10:00 to"
    assert window + " 2026-11-24 14:00" in latency
    assert "Top endpoints by requests" in _run(capsys, "top", "endpoints", *WINDOW)
    assert "erin@example.com" in _run(capsys, "top", "users", *WINDOW)
    printed = _run(capsys, "security", *WINDOW)
    for title in (
        "Suspicious IPs per hour",
        "Top failing IPs",
        "Top failing keys",
        "Refusals by reason per hour",
        "Top rate-limited users",
    ):
        assert title in printed
    assert "203.0.113.66" in printed and "AUTH_FAILURES, FAILURE_RATIO" in printed


def _window_of(*argv: str) -> tuple[datetime, datetime]:
    parser = argparse.ArgumentParser(prog="metering")
    analytics.add_parser(parser.add_subparsers(required=True))
    return analytics.window_of(parser.parse_args(["top", "users", *argv]), _at(15))


def test_windows_from_the_command_line() -> None:
    """--last ends now; --from and --to take RFC 3339 (UTC without a zone) or an age."""
    now = _at(15)
    assert _window_of() == (now - timedelta(hours=24), now)
    assert _window_of("--last", "90m") == (now - timedelta(minutes=90), now)
    assert _window_of("--last", "7d") == (now - timedelta(days=7), now)
    assert _window_of("--from", "2h") == (now - timedelta(hours=2), now)
    assert _window_of("--from", "2026-11-24T10:00", "--to", "2026-11-24T12:00:00+01:00") == (_at(10), _at(11))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--last", "8d"), "at most 7 days"),
        (("--last", "yesterday"), "--last 'yesterday': use minutes, hours, days or weeks"),
        (("--last", "5y"), "--last '5y'"),
        (("--last", "0m"), "--last '0m'"),
        (("--to", "2026-11-24T10:00Z"), "--to goes with --from"),
        (("--from", "2026-11-24T12:00Z", "--to", "2026-11-24T11:00Z"), "the window is empty"),
        (("--from", "noon"), "--from: 'noon' is not a time"),
    ],
)
def test_a_window_that_cannot_work_is_a_usage_error(argv: tuple[str, ...], message: str) -> None:
    """Empty, longer than the 7-day retention, or unreadable: exit 2 with the flag named."""
    with pytest.raises(CommandError, match=message) as raised:
        _window_of(*argv)
    assert raised.value.exit_code == USAGE_ERROR


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{", "not JSON"),
        ("[1]", "rules: an object"),
        ('{"keys_tried": 99}', "keys_tried: a whole number"),
    ],
)
def test_a_rules_file_that_cannot_work_is_a_usage_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    """A missing, non-JSON or invalid rules file is a usage error naming the file."""
    path = tmp_path / "rules.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message) as raised:
        analytics.load_rules(path)
    assert raised.value.exit_code == USAGE_ERROR


def test_an_endpoint_must_name_a_method_and_a_route(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """--endpoint '/items/{id}' without a method could never match: a usage error."""
    with pytest.raises(CommandError, match="a method and a route template") as raised:
        _run(capsys, "latency", "--endpoint", "/items/{id}")
    assert raised.value.exit_code == USAGE_ERROR


def test_the_guard_fails_a_scan_however_it_is_issued(world: World) -> None:
    """The wrapper the reads go through: a Scan by method or by paginator fails and is recorded."""
    probe = GuardedClient(boto3.client("dynamodb", region_name="us-east-1"))
    with pytest.raises(AssertionError, match="a Scan was issued"):
        probe.scan(TableName=SETTINGS.analytics_table, Limit=1)
    with pytest.raises(AssertionError, match="a Scan was issued"):
        next(iter(probe.get_paginator("scan").paginate(TableName=SETTINGS.analytics_table)))
    assert len(probe.scans) == 2


def test_reconcile_sets_each_hour_and_endpoint_of_the_lines_against_the_events(
    world: World, guard: GuardedClient
) -> None:
    """The two records side by side: the lines, the events, the gateway responses before the
    authorizer, the remainder, per hour and endpoint; one index query per hour, one key query."""
    start, end = _at(9), _at(15)
    found = reconcile(world.table, start, end)
    want: dict[tuple[datetime, str], Counter[str]] = defaultdict(Counter)
    for line in world.lines:
        counted = want[(_time(line).replace(minute=0, second=0, microsecond=0), _endpoint(line))]
        counted["requests"] += 1
        counted[line["errorType"]] += 1
    for e in world.events:
        want[(_time(e).replace(minute=0, second=0, microsecond=0), _endpoint(e))]["metered"] += 1
    got = {(row.hour, row.endpoint): row for row in found.rows}
    assert set(got) == set(want)
    for place, counts in want.items():
        row = got[place]
        before = {kind: counts[kind] for kind in ("THROTTLED", "WAF_FILTERED") if counts[kind]}
        assert (row.requests, row.metered, dict(row.before_authorizer)) == (
            counts["requests"], counts["metered"], before
        )  # fmt: skip
        assert row.authorizer_failed == counts["AUTHORIZER_FAILURE"]
        assert row.unmetered == counts["requests"] - sum(before.values()) - counts["metered"]
    assert sum(t.requests for t in found.totals) == len(world.lines)
    assert sum(t.metered for t in found.totals) == len(world.events)
    assert guard.calls == Counter({"Query": len(found.hours) + 1, "BatchGetItem": len(found.hours)})

    one = reconcile(world.table, start, end, endpoint="GET /items/{id}")
    assert one.rows == tuple(row for row in found.rows if row.endpoint == "GET /items/{id}")


def test_reconcile_prints_its_tables(world: World, guard: GuardedClient) -> None:
    found = reconcile(world.table, _at(9), _at(15))
    report = reconcile_report(found, _at(9), _at(15), {"HOUR#2026-11-24T10": {"EventsFailed": 3}}, _at(14))
    console = Console(record=True, width=220)
    print_reconciliation(console, report)
    text = console.export_text()
    assert "Completeness per hour" in text and "Per hour and endpoint" in text
    assert f"Unmetered in the window's final hours: {report['unmetered']:,}" in text
    assert report["hours"][1]["cloudwatch"] == {"EventsFailed": 3}
    assert [hour["final"] for hour in report["hours"]] == [True] * 5 + [False]  # 14:00 ends after 14:00
    assert report["unmetered"] == sum(hour["unmetered"] for hour in report["hours"][:5])
    assert "14 *" in text
