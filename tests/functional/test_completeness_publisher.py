"""`consumer.completeness`: each final hour published once across tasks and restarts, never before
the readers have reported their lag, and on /metrics; against moto's DynamoDB and CloudWatch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from prometheus_client import CollectorRegistry, generate_latest

from consumer.completeness import CLAIM_STALE, LOOKBACK_HOURS, CompletenessPublisher
from consumer.core.completeness import final_hours
from contract.table import analytics_table_spec, reconciled_key
from reads import Table

TABLE = "complical-usage-analytics-ft"
NOW = datetime(2026, 11, 24, 12, 20, tzinfo=UTC)
AFTER = timedelta(minutes=15)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        dynamodb, cloudwatch = boto3.client("dynamodb"), boto3.client("cloudwatch")
        dynamodb.create_table(**analytics_table_spec(TABLE))
        yield dynamodb, cloudwatch


def _write(dynamodb: Any, hour: datetime, *, lines: int, events: int, throttled: int = 0) -> None:
    """What the consumer writes for one endpoint's hour: its lines' counts, and its events' on GLOBAL."""
    sk = f"HOUR#{hour:%Y-%m-%dT%H}"
    endpoint = {"pk": {"S": "ENDPOINT#GET /items/{id}"}, "sk": {"S": sk}, "bucket": {"S": sk}}
    endpoint |= {"responses": {"N": str(lines)}, "g_THROTTLED": {"N": str(throttled)}}
    dynamodb.put_item(TableName=TABLE, Item=endpoint)
    dynamodb.put_item(
        TableName=TABLE,
        Item={"pk": {"S": "GLOBAL"}, "sk": {"S": sk}, "e_GET /items/{id}": {"N": str(events)}},
    )


def _lag(cloudwatch: Any, millis: float, at: datetime) -> None:
    cloudwatch.put_metric_data(
        Namespace="CompliCal/Usage",
        MetricData=[
            {
                "MetricName": "IteratorAge",
                "Value": millis,
                "Unit": "Milliseconds",
                "Timestamp": at,
                "Dimensions": [{"Name": "Environment", "Value": "ft"}],
            }
        ],
    )


def _publisher(dynamodb: Any, cloudwatch: Any, now: datetime = NOW) -> CompletenessPublisher:
    return CompletenessPublisher(Table(dynamodb, TABLE), cloudwatch, "ft", after=AFTER, clock=lambda: now)


def _published(cloudwatch: Any) -> tuple[float, float]:
    """The UnmeteredRequests sent: their sum and how many (all are stamped at the fake clock's now)."""
    reply = cloudwatch.get_metric_statistics(
        Namespace="CompliCal/Usage",
        MetricName="UnmeteredRequests",
        Dimensions=[{"Name": "Environment", "Value": "ft"}],
        StartTime=NOW - timedelta(days=1),
        EndTime=NOW + timedelta(days=1),
        Period=60,
        Statistics=["Sum", "SampleCount"],
    )
    points = reply["Datapoints"]
    return sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points)


def test_final_hours_wait_for_the_logs_and_for_the_readers() -> None:
    assert final_hours(NOW, AFTER, timedelta(0), 2) == [
        NOW.replace(hour=10, minute=0),
        NOW.replace(hour=11, minute=0),
    ]
    # 20 minutes behind the tip: 11:00-12:00 is not final until 12:35
    assert final_hours(NOW, AFTER, timedelta(minutes=20), 1) == [NOW.replace(hour=10, minute=0)]
    assert final_hours(NOW.replace(minute=14), AFTER, timedelta(0), 1) == [NOW.replace(hour=10, minute=0)]


def test_each_final_hour_is_published_once_whatever_the_tasks(clients: tuple[Any, Any]) -> None:
    dynamodb, cloudwatch = clients
    eleven = NOW.replace(hour=11, minute=0)
    _write(dynamodb, eleven, lines=120, events=100, throttled=12)  # 8 unmetered
    _lag(cloudwatch, 900, NOW - timedelta(minutes=1))
    tasks = [_publisher(dynamodb, cloudwatch), _publisher(dynamodb, cloudwatch)]
    for task in tasks:
        task.cycle()
        task.cycle()
    _publisher(dynamodb, cloudwatch).cycle()  # a restarted task
    assert _published(cloudwatch) == (8.0, LOOKBACK_HOURS)  # 23 hours of 0, and 11:00's 8
    item = dynamodb.get_item(TableName=TABLE, Key=reconciled_key(eleven))["Item"]
    assert {name: item[name]["N"] for name in ("requests", "metered", "explained", "unmetered")} == {
        "requests": "120",
        "metered": "100",
        "explained": "12",
        "unmetered": "8",
    }
    for task in tasks:  # every task shows the last final hour, whichever published it
        assert task.latest is not None and (task.latest.hour, task.latest.unmetered) == (eleven, 8)
        registry = CollectorRegistry()
        registry.register(task)
        scraped = generate_latest(registry).decode()
        assert "metering_unmetered_requests 8.0" in scraped
        assert f"metering_completeness_ratio {100 / 108}" in scraped
        samples = dict(line.split(" ") for line in scraped.splitlines() if not line.startswith("#"))
        assert float(samples["metering_completeness_hour_timestamp_seconds"]) == eleven.timestamp()


def test_nothing_is_final_before_the_readers_report_their_lag(clients: tuple[Any, Any]) -> None:
    dynamodb, cloudwatch = clients
    task = _publisher(dynamodb, cloudwatch)
    task.cycle()
    assert _published(cloudwatch) == (0, 0) and task.latest is None
    assert list(CollectorRegistry().collect()) == [] and list(task.collect()) == []


def test_readers_far_behind_hold_the_hour_back(clients: tuple[Any, Any]) -> None:
    dynamodb, cloudwatch = clients
    _lag(cloudwatch, 30 * 60 * 1000, NOW - timedelta(minutes=2))  # 30 min behind the tip
    task = _publisher(dynamodb, cloudwatch)
    task.cycle()
    assert task.latest is not None and task.latest.hour == NOW.replace(hour=10, minute=0)


def test_an_aws_error_defers_the_hour_and_stops_nothing(clients: tuple[Any, Any]) -> None:
    dynamodb, cloudwatch = clients
    _lag(cloudwatch, 0, NOW - timedelta(minutes=1))
    task = CompletenessPublisher(
        Table(dynamodb, "no-such-table"), cloudwatch, "ft", after=AFTER, clock=lambda: NOW
    )
    task.cycle()  # ResourceNotFoundException: logged, tried again next cycle
    assert task.latest is None and _published(cloudwatch) == (0, 0)


def test_a_claim_its_task_never_published_is_taken_once_stale(clients: tuple[Any, Any]) -> None:
    """A task that died between its claim and `publishedAt`: after CLAIM_STALE another publishes."""
    dynamodb, cloudwatch = clients
    eleven = NOW.replace(hour=11, minute=0)
    _write(dynamodb, eleven, lines=10, events=7)
    _lag(cloudwatch, 0, NOW - timedelta(minutes=1))
    dynamodb.put_item(
        TableName=TABLE,
        Item=reconciled_key(eleven) | {"claimedAt": {"N": str(int(NOW.timestamp()) - 60)}},
    )
    soon = _publisher(dynamodb, cloudwatch)
    soon.cycle()  # claimed a minute ago: its claimant may still publish
    assert _published(cloudwatch) == (0.0, LOOKBACK_HOURS - 1)
    _lag(cloudwatch, 0, NOW + CLAIM_STALE - timedelta(minutes=1))
    later = _publisher(dynamodb, cloudwatch, NOW + CLAIM_STALE)
    later.cycle()
    assert _published(cloudwatch) == (3.0, LOOKBACK_HOURS)  # 11:00 too, now
    assert "publishedAt" in dynamodb.get_item(TableName=TABLE, Key=reconciled_key(eleven))["Item"]
