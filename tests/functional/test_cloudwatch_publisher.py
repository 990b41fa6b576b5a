"""The background CloudWatch publisher: what it sends reads back from the emulator's CloudWatch, it never
blocks or fails its caller, and a full queue or a failed call costs metrics only."""

from __future__ import annotations

import io
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import structlog
from prometheus_client import CollectorRegistry

from consumer.cloudwatch import BackgroundPublisher, api_sender, emf_sender
from consumer.core.measures import MetricFolder, Sample
from consumer.errors import SinkUnavailable
from consumer.metrics import ProcessorMetrics, health
from contract.cloudwatch import ENVIRONMENT, NAMESPACE
from tests.emf import assert_valid_emf, parse_emf

LOG = structlog.get_logger("test")


def _read_back(cloudwatch: Any, environment: str, metric: str, stat: str, start: datetime) -> float:
    reply = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": metric,
                        "Dimensions": [{"Name": ENVIRONMENT, "Value": environment}],
                    },
                    "Period": 60,
                    "Stat": stat,
                },
            }
        ],
        StartTime=start - timedelta(minutes=5),
        EndTime=start + timedelta(minutes=5),
    )
    return float(sum(reply["MetricDataResults"][0]["Values"]))


def test_what_is_put_reads_back_from_cloudwatch(aws_env: dict[str, str]) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    environment = f"pub-{uuid.uuid4().hex[:6]}"
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    publisher = BackgroundPublisher(api_sender(cloudwatch, environment), interval=0.1, log=LOG)
    publisher.put([Sample("ApiCalls", 40, minute), Sample("ApiCalls", 2, minute + timedelta(seconds=30))])
    publisher.put(
        [Sample("ProcessingLatency", 1500, minute, count=9), Sample("ProcessingLatency", 90, minute)]
    )
    publisher.close(timeout=10)
    assert _read_back(cloudwatch, environment, "ApiCalls", "Sum", minute) == 42
    assert _read_back(cloudwatch, environment, "ProcessingLatency", "SampleCount", minute) == 10


def test_a_full_queue_drops_samples_and_counts_them_without_blocking() -> None:
    sent: list[MetricFolder] = []
    dropped: list[int] = []
    publisher = BackgroundPublisher(sent.append, interval=3600, log=LOG, capacity=3, dropped=dropped.append)
    publisher.put(Sample("ApiCalls", 1, datetime.now(UTC)) for _ in range(5))
    assert dropped == [2]
    publisher.close(timeout=5)
    assert [len(folder) for folder in sent] == [1]  # the three kept, folded into one datum


def test_a_failed_send_costs_that_batch_only() -> None:
    calls: list[int] = []
    second = threading.Event()

    def send(folder: MetricFolder) -> None:
        calls.append(len(folder))
        if len(calls) == 1:
            raise SinkUnavailable("CloudWatch is down")
        second.set()

    publisher = BackgroundPublisher(send, interval=0.05, log=LOG)
    publisher.put([Sample("ApiCalls", 1, datetime.now(UTC))])
    threading.Event().wait(0.3)
    publisher.put([Sample("RecordsProcessed", 1, datetime.now(UTC))])
    assert second.wait(5)
    publisher.close(timeout=5)


def test_emf_lines_are_valid_emf_one_per_line() -> None:
    stream = io.StringIO()
    publisher = BackgroundPublisher(emf_sender("prod", stream), interval=3600, log=LOG)
    now = datetime.now(UTC)
    publisher.put([Sample("ApiCalls", 3, now), Sample("DeadLetters", 1, now, (("Reason", "NOT_JSON"),))])
    publisher.close(timeout=5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert_valid_emf(parse_emf(line), now.timestamp() * 1000)
    assert {json.loads(line).get("Reason") for line in lines} == {None, "NOT_JSON"}


def test_health_is_judged_from_what_the_record_processors_wrote() -> None:
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    now = 1_000_000.0
    assert not health(registry, True, now, stall_seconds=120, poll_seconds=60).ready  # no lease yet
    metrics.leases_held.labels("shard-a").set(1)
    metrics.leases_held.labels("shard-b").set(1)
    metrics.unflushed_since.labels("shard-a").set(now - 119)
    metrics.unflushed_since.labels("shard-b").set(0)  # nothing waiting, however long ago it flushed
    state = health(registry, True, now, stall_seconds=120, poll_seconds=60)
    assert state.healthy and state.ready and state.leases_held == 2
    metrics.unflushed_since.labels("shard-a").set(now - 121)
    state = health(registry, True, now, stall_seconds=120, poll_seconds=60)
    assert not state.healthy and state.stalled == ("shard-a",)
    assert json.loads(state.body()) == {
        "status": "stalled",
        "leases_held": 2,
        "stalled": ["shard-a"],
        "not_polling": [],
    }
    assert not health(registry, False, now, stall_seconds=120, poll_seconds=60).healthy


def test_health_fails_when_a_held_shard_has_not_been_polled_for_too_long() -> None:
    """A shard whose processor received no poll (GetRecords failing) for poll_seconds is unhealthy,
    even though no record waits; a lease let go (0) is not judged."""
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    now = 1_000_000.0
    metrics.leases_held.labels("shard-a").set(1)
    metrics.last_poll.labels("shard-a").set(now - 59)
    metrics.last_poll.labels("shard-b").set(0)
    assert health(registry, True, now, stall_seconds=120, poll_seconds=60).healthy
    metrics.last_poll.labels("shard-a").set(now - 61)
    state = health(registry, True, now, stall_seconds=120, poll_seconds=60)
    assert not state.healthy and state.not_polling == ("shard-a",) and not state.stalled
    assert json.loads(state.body())["status"] == "not polling"
