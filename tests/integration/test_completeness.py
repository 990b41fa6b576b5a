"""Is the metering complete, end to end (issue 19): requests through the real authorizer, each with the
access-log line API Gateway would write, through the emulator's CloudWatch Logs subscription; a known
set of usage events lost on the way to the stream (answered as sent, as a reclaimed Lambda container's
would be); stage-throttled requests with a line and no event; the real daemon counting. `metering
reconcile` reports exactly the lost events as unmetered, in their hours and endpoints, zero elsewhere,
and the throttled ones as explained. Then the consumer publishes each final hour once."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from authorizer.keystore import create_key
from authorizer.request import parse_request
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings
from consumer.testing import access_log_line
from contract.table import hour_sk, reconciled_key
from metering.emulator import free_port
from reads import Table
from reads.completeness import reconcile
from tests.integration.conftest import Stack
from tests.integration.test_access_logs import put_lines
from tests.integration.test_faults import wait_for
from tests.records import record_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROUTES = [("GET", "/items/{id}", "/items/{n}"), ("POST", "/orders", "/orders")]
REQUESTS_PER_HOUR = 150
STATUS = {
    "allowed": ("200", "-"),
    "auth_failed": ("401", "UNAUTHORIZED"),
    "rate_limited": ("429", "ACCESS_DENIED"),
}


class LosingKinesis:
    """Kinesis losing each record that holds an event `doomed` picks, while answering that all were
    put: what a frozen or reclaimed Lambda container's batches come to (the producer never learns).
    A record is a batch of events (contract.batch): `lost` keeps every event lost with it."""

    def __init__(self, client: Any, doomed: Callable[[dict[str, Any]], bool]) -> None:
        self._client, self._doomed = client, doomed
        self.lost: list[dict[str, Any]] = []

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        losing = [any(map(self._doomed, record_events(record["Data"]))) for record in Records]
        kept = [record for record, lose in zip(Records, losing, strict=True) if not lose]
        reply = self._client.put_records(StreamName=StreamName, Records=kept) if kept else {"Records": []}
        answers = iter(reply["Records"])
        entries = []
        for record, lose in zip(Records, losing, strict=True):
            if lose:
                self.lost += record_events(record["Data"])
            entries.append(
                {"SequenceNumber": "0", "ShardId": "shardId-000000000000"} if lose else next(answers)
            )
        return {"FailedRecordCount": reply.get("FailedRecordCount", 0), "Records": entries}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Traffic:
    """Requests through the real authorizer at chosen instants, and the lines API Gateway would log."""

    def __init__(self, stack: Stack, doomed: set[str]) -> None:
        self.at = 0.0
        settings = AuthorizerSettings.from_env(stack.env | {"ENABLE_KINESIS_ANALYTICS": "true"})
        self.kinesis = LosingKinesis(stack.kinesis, lambda event: event.get("requestId") in doomed)
        self.authorizer = Authorizer(settings, stack.dynamodb, self.kinesis, clock=lambda: self.at)
        self.lines: list[dict[str, str]] = []
        self.keys = [
            create_key(
                stack.dynamodb, settings.api_keys_table, f"user{n}@example.com", "pro", lambda: self.at
            )[1]
            for n in range(3)
        ]

    def request(self, at: datetime, route: tuple[str, str, str], key: str | None, request_id: str) -> None:
        """One request to the authorizer, then its line."""
        method, resource, path = route
        self.at = at.timestamp()
        event = {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:abc123/prod/{method}{resource}",
            "resource": resource,
            "path": path,
            "httpMethod": method,
            "headers": {"x-api-key": key} if key else {},
            "requestContext": {
                "requestId": request_id,
                "requestTimeEpoch": int(at.timestamp() * 1000),
                "identity": {"sourceIp": "198.51.100.7"},
            },
        }
        decision, _ = self.authorizer.authorize(parse_request(event))
        status, error_type = STATUS[decision.outcome.value.lower()]
        self.log(at, route, request_id, status=status, errorType=error_type)

    def throttled(self, at: datetime, route: tuple[str, str, str]) -> None:
        """A request the stage throttled: API Gateway answered before the authorizer ran."""
        self.log(
            at, route, str(uuid.uuid4()), status="429", errorType="THROTTLED", userEmail="-", apiKeyId="-"
        )

    def log(self, at: datetime, route: tuple[str, str, str], request_id: str, **fields: str) -> None:
        method, resource, path = route
        self.lines.append(
            access_log_line(
                at,
                requestId=request_id,
                httpMethod=method,
                resourcePath=resource,
                path=f"/prod{path}",
                integrationLatency="-",
                **fields,
            )
        )


def test_reconcile_reports_exactly_the_lost_events_and_explains_throttling(stack: Stack) -> None:
    rng = random.Random(19)
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    hours = [first, first + timedelta(hours=1)]
    doomed: set[str] = set()
    traffic = Traffic(stack, doomed)
    throttled: Counter[tuple[str, str]] = Counter()
    for hour_index, hour in enumerate(hours):
        for n in range(REQUESTS_PER_HOUR):
            at = hour + timedelta(seconds=n * 3600 / REQUESTS_PER_HOUR + rng.random())
            route = rng.choice(ROUTES)
            key = rng.choice([*traffic.keys, None])  # a quarter without a key: API_AUTH_FAILED
            endpoint, request_id = f"{route[0]} {route[1]}", str(uuid.uuid4())
            if hour_index == 0 and n in (7, 97):  # lost (with the rest of its batch) in the first hour only
                doomed.add(request_id)
            traffic.request(at, route, key, request_id)
            if n % 20 == 0:
                traffic.throttled(at, route)
                throttled[(hour_sk(hour), endpoint)] += 1
        assert traffic.authorizer.producer.flush(30)  # no batch holds events of both hours
    assert traffic.authorizer.producer_stats().failed == 0
    want_lost = Counter(
        (hour_sk(_event_time(e)), f"{e['httpMethod']} {e['resourcePath']}") for e in traffic.kinesis.lost
    )
    assert len(want_lost) > 1 and {hour for hour, _ in want_lost} == {hour_sk(hours[0])}
    print(f"\n[completeness] {len(traffic.lines)} lines, {sum(want_lost.values())} lost: {dict(want_lost)}")
    put_lines(stack, traffic.lines)

    # Counting, nothing published: the publisher's first look comes before any reader has reported its
    # lag, its next an hour later, and these hours are final only 6 h after their end. (A cycle within
    # this run would publish older hours, and a stop mid-claim leaves a claim for 5 minutes.)
    consumer = stack.start_consumer(RECONCILE_AFTER_SECONDS="21600", RECONCILE_EVERY_SECONDS="3600")
    table = Table(stack.dynamodb, stack.settings.analytics_table)
    expected_requests = Counter(
        (hour_sk(_at(f)), f"{f['httpMethod']} {f['resourcePath']}") for f in traffic.lines
    )

    def counted() -> bool:
        rows = reconcile(table, hours[0], hours[1] + timedelta(hours=1)).rows
        seen = {(hour_sk(r.hour), r.endpoint): r for r in rows}
        return all(
            key in seen and seen[key].requests == want and seen[key].unmetered == want_lost[key]
            for key, want in expected_requests.items()
        )

    try:
        wait_for(counted, 240, "every line and every event that reached the stream counted")
    finally:
        assert consumer.stop() == 0, consumer.log_tail()

    report = _reconcile_json(
        stack, "--from", hours[0].isoformat(), "--to", (hours[1] + timedelta(hours=1)).isoformat()
    )
    rows = {(r["hour"][:13], r["endpoint"]): r for r in report["endpoints"]}
    for place, requests in expected_requests.items():
        row = rows[(place[0].removeprefix("HOUR#"), place[1])]
        assert row["requests"] == requests
        assert row["before_authorizer"] == ({"THROTTLED": throttled[place]} if throttled[place] else {})
        assert row["unmetered"] == want_lost[place], row
        assert row["metered"] == requests - throttled[place] - want_lost[place]
    totals = {r["hour"][:13]: r for r in report["hours"]}
    assert totals[hour_sk(hours[0]).removeprefix("HOUR#")]["unmetered"] == sum(want_lost.values())
    assert totals[hour_sk(hours[1]).removeprefix("HOUR#")]["unmetered"] == 0  # nothing lost: zero
    assert report["unmetered"] == sum(want_lost.values())

    # Final now: a consumer publishes each hour once, and shows the last final hour on /metrics.
    port = free_port()
    publishing = stack.start_consumer(
        "publishing", RECONCILE_AFTER_SECONDS="1", RECONCILE_EVERY_SECONDS="2", METRICS_PUBLISH_SECONDS="5",
        METRICS_PORT=str(port),
    )  # fmt: skip
    try:
        wait_for(
            lambda: None not in [_reconciled(stack, hour) for hour in hours], 180, "both hours published"
        )
        assert [_reconciled(stack, hour) for hour in hours] == [sum(want_lost.values()), 0]
        # the last 24 hours, each once (25 if the run crossed an hour's end: one more became final);
        # the newest may wait while the readers report being behind (consumer.core.completeness)
        wait_for(lambda: _published(stack)[1] >= 24, 360, "the last 24 hours published")
        lost, hours_published = _published(stack)
        assert lost == sum(want_lost.values())
        assert hours_published in (24, 25)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "metering_unmetered_requests 0.0" in scraped  # the last final hour had no traffic
    finally:
        assert publishing.stop() == 0, publishing.log_tail()


def _event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def _at(line: dict[str, str]) -> datetime:
    return datetime.fromtimestamp(int(line["requestTimeEpoch"]) / 1000, UTC)


def _reconcile_json(stack: Stack, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "metering.cli", "reconcile", *args, "--json"],
        env=os.environ | stack.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _published(stack: Stack) -> tuple[float, float]:
    """The unmetered requests the consumer sent to CloudWatch lately, and in how many hours' figures."""
    now = datetime.now(UTC)
    published = stack.cloudwatch.get_metric_statistics(
        Namespace="CompliCal/Usage",
        MetricName="UnmeteredRequests",
        Dimensions=[{"Name": "Environment", "Value": stack.settings.environment}],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=1),
        Period=3600,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    return sum(p["Sum"] for p in published), sum(p["SampleCount"] for p in published)


def _reconciled(stack: Stack, hour: datetime) -> int | None:
    """The unmetered requests the hour's RECONCILED item records; None before it is published."""
    item = stack.dynamodb.get_item(
        TableName=stack.settings.analytics_table, Key=reconciled_key(hour), ConsistentRead=True
    ).get("Item")
    return None if item is None else int(item["unmetered"]["N"])
