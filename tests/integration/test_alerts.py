"""Threshold alerts with the real daemon: one FIRING and one RESOLVED per episode, through two workers,
a kill -9 of the worker that raised it, a lease move and the replays that follow."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from consumer.testing import event
from tests.integration.conftest import Stack
from tests.integration.test_faults import wait_for
from tests.integration.test_pipeline import put_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

USER = "flood@example.com"
THRESHOLD = 20  # calls in a minute
RESOLVE_AFTER = 75  # seconds from the first events to the episode's resolution


def _subscribed_queue(stack: Stack) -> str:
    sns: Any = boto3.client("sns", region_name="us-east-1")
    sqs: Any = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name=stack.settings.alerts_topic_name)["TopicArn"]  # exists: returns it
    queue = sqs.create_queue(QueueName=f"alerts-{stack.settings.environment}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return str(queue)


def _received(queue: str, into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sqs: Any = boto3.client("sqs", region_name="us-east-1")
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            into.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return into


def _rules(path: Path, window_start: datetime) -> Path:
    """Only USER_CALLS_PER_MINUTE, with a grace that resolves the episode RESOLVE_AFTER from now."""
    grace = (
        datetime.now(UTC) + timedelta(seconds=RESOLVE_AFTER) - window_start - timedelta(minutes=2)
    ).seconds
    settings = {
        "user_calls_per_minute": THRESHOLD,
        "plan_minute_percent": None,
        "plan_month_percent": None,
        "ip_auth_failures_per_hour": None,
        "user_rate_limited_per_hour": None,
        "auth_failure_ratio": None,
        "suspicion": None,
        "resolve_grace_seconds": grace,
    }
    path.write_text(json.dumps(settings))
    return path


def _holder(stack: Stack, user_shard: str) -> str:
    return next(i["leaseOwner"]["S"] for i in stack.leases() if i["leaseKey"]["S"] == user_shard)


def _shard_of_user(stack: Stack) -> str:
    """The shard holding the user's events (all of one user share a partition key)."""
    for shard in stack.kinesis.list_shards(StreamName=stack.settings.stream_name)["Shards"]:
        iterator = stack.kinesis.get_shard_iterator(
            StreamName=stack.settings.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        if any(
            USER.encode() in r["Data"] for r in stack.kinesis.get_records(ShardIterator=iterator)["Records"]
        ):
            return str(shard["ShardId"])
    raise AssertionError("the user's events are on no shard")


def test_one_firing_and_one_resolved_through_two_workers_and_a_kill_9(stack: Stack, tmp_path: Path) -> None:
    # Events of the minute before last: the episode resolves RESOLVE_AFTER seconds from now.
    window = (datetime.now(UTC) - timedelta(seconds=100)).replace(second=0, microsecond=0)
    rules = {"ALERT_RULES_FILE": str(_rules(tmp_path / "rules.json", window))}
    queue = _subscribed_queue(stack)
    burst = [event(at=window + timedelta(seconds=n), email=USER) for n in range(THRESHOLD + 5)]
    put_events(stack, burst)
    first = stack.start_consumer("first", KCL_WORKER_ID="worker-a", **rules)
    second = stack.start_consumer("second", KCL_WORKER_ID="worker-b", **rules)
    messages: list[dict[str, Any]] = []
    try:
        wait_for(lambda: bool(_received(queue, messages)), 120, "the FIRING notification")
        assert [(m["state"], m["subject"], m["episode"]) for m in messages] == [("FIRING", USER, 1)]
        # kill -9 whichever worker holds the user's shard, mid-episode; more breaching events of the
        # same window reach the other worker after the lease moves (and its replays).
        holder = _holder(stack, _shard_of_user(stack))
        victim, survivor = (first, second) if holder == "worker-a" else (second, first)
        victim.kill_hard()
        put_events(stack, [event(at=window + timedelta(seconds=40), email=USER) for _ in range(THRESHOLD)])
        wait_for(lambda: any(m["state"] == "RESOLVED" for m in _received(queue, messages)), 240, "RESOLVED")
        time.sleep(15)  # time for a duplicate to show up, from a sweep or a replay
        _received(queue, messages)
        assert sorted((m["state"], m["episode"]) for m in messages) == [("FIRING", 1), ("RESOLVED", 1)]
        assert survivor.process.poll() is None, survivor.log_tail()
    finally:
        for consumer in (first, second):
            if consumer.process.poll() is None:
                consumer.stop()
