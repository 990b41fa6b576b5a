"""Alert episodes against the emulator: one FIRING and one RESOLVED per episode, delivered through
the SNS topic to a subscribed SQS queue, whatever the number of workers and replays."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from consumer import logs
from consumer.core.alerts import AlertRules
from consumer.errors import Misconfigured
from consumer.sinks.alerts import RESEND_AFTER, DynamoDBAlerts, topic_arn
from contract.table import analytics_table_spec

START = datetime(2026, 11, 24, 17, 52, 20, tzinfo=UTC)
MINUTE = "MINUTE#2026-11-24T17:52"
RULES = AlertRules(resolve_grace_seconds=30)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    dynamodb: Any
    sns: Any
    sqs: Any
    table: str
    topic: str
    queue: str
    clock: Clock

    def worker(self, sns: Any | None = None) -> DynamoDBAlerts:
        return DynamoDBAlerts(
            self.dynamodb,
            self.table,
            sns or self.sns,
            self.topic,
            RULES,
            environment="test",
            log=logs.get("test"),
            now=self.clock,
        )

    def messages(self) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        while True:
            reply = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not reply.get("Messages"):
                return received
            for message in reply["Messages"]:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def stack(aws_env: dict[str, str]) -> Iterator[Stack]:
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    dynamodb.create_table(**analytics_table_spec(name))
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    yield Stack(dynamodb, sns, sqs, name, topic, queue, Clock())
    dynamodb.delete_table(TableName=name)


def flush(*, calls: int, window: str = MINUTE) -> dict[tuple[str, str], dict[str, Any]]:
    """What a flush returns of alice's hour item, with `calls` in the minute `window`."""
    hour, minute = window.removeprefix("MINUTE#").split(":")
    return {("USER#alice@example.com", f"HOUR#{hour}"): {f"c{minute}": calls}}


def test_two_workers_and_replays_send_one_firing_and_one_resolved(stack: Stack) -> None:
    first, second = stack.worker(), stack.worker()
    first.observe(flush(calls=1500))
    second.observe(flush(calls=1500))  # the other worker, after a lease move
    stack.worker().observe(flush(calls=1700))  # a replay after a crash, in a fresh process
    later = "MINUTE#2026-11-24T17:53"
    second.observe(flush(calls=1200, window=later))  # still over: the same episode goes on
    (firing,) = stack.messages()
    assert (firing["state"], firing["episode"], firing["window"]["first"]) == ("FIRING", 1, MINUTE)

    stack.clock.now = datetime(2026, 11, 24, 17, 55, 29, tzinfo=UTC)  # 17:53 + 2 min + 29 s
    first.sweep()
    assert stack.messages() == []  # the minute after the last breach has not passed yet (with grace)
    stack.clock.now += timedelta(seconds=1)
    first.sweep()
    second.sweep()
    (resolved,) = stack.messages()
    assert (resolved["state"], resolved["episode"], resolved["window"]) == (
        "RESOLVED",
        1,
        {"first": MINUTE, "last": later},
    )
    assert resolved["id"] != firing["id"]

    stack.worker().observe(flush(calls=1500, window=later))  # a late replay of an old breach
    assert stack.messages() == []
    first.observe(flush(calls=2000, window="MINUTE#2026-11-24T17:56"))  # a new breach: a new episode
    (again,) = stack.messages()
    assert (again["state"], again["episode"]) == ("FIRING", 2)


def test_a_notification_lost_in_a_crash_is_sent_by_the_next_sweep_once(stack: Stack) -> None:
    class Unreachable:
        def publish(self, **_: Any) -> None:
            raise EndpointConnectionError(endpoint_url="http://sns")

    stack.worker(Unreachable()).observe(flush(calls=5000))  # recorded FIRING, the publish failed
    assert stack.messages() == []
    stack.worker().sweep()
    assert stack.messages() == []  # maybe still being sent by the worker that changed it
    stack.clock.now += RESEND_AFTER
    stack.worker().sweep()
    stack.worker().sweep()
    (message,) = stack.messages()
    assert message["state"] == "FIRING"


def test_the_message_is_the_documented_one(stack: Stack) -> None:
    stack.worker().observe(flush(calls=1001))
    (message,) = stack.messages()
    assert message == {
        "version": 1,
        "id": message["id"],
        "environment": "test",
        "rule": "USER_CALLS_PER_MINUTE",
        "subject": "alice@example.com",
        "state": "FIRING",
        "episode": 1,
        "window": {"first": MINUTE, "last": MINUTE},
        "value": 1001.0,
        "threshold": 1000.0,
        "detail": "",
        "at": "2026-11-24T17:52:20.000Z",
    }


def test_a_missing_topic_stops_start_up_naming_the_setting(stack: Stack) -> None:
    sts = boto3.client("sts", region_name="us-east-1")
    assert topic_arn(sts, stack.sns, stack.topic.rsplit(":", 1)[1]) == stack.topic
    with pytest.raises(Misconfigured, match="ALERTS_TOPIC_NAME=nope"):
        topic_arn(sts, stack.sns, "nope")


def test_metering_alerts_lists_open_episodes_then_recently_resolved_ones(stack: Stack) -> None:
    from metering.commands.alerts import list_episodes
    from reads import Table

    worker = stack.worker()
    worker.observe(flush(calls=1500))
    worker.observe({("IP#198.51.100.7", "HOUR#2026-11-24T17"): {"authFailures": 150}})
    stack.clock.now = datetime(2026, 11, 24, 17, 55, tzinfo=UTC)
    worker.sweep()  # the user's minute episode resolves; the IP's hour goes on
    table = Table(stack.dynamodb, stack.table)
    listed = list_episodes(table, since=START)
    assert [(e["rule"], e["subject"], e["state"]) for e in listed] == [
        ("IP_AUTH_FAILURES", "198.51.100.7", "FIRING"),
        ("SUSPICIOUS_IP", "198.51.100.7", "FIRING"),  # 150 failures also break its auth-failure rule
        ("USER_CALLS_PER_MINUTE", "alice@example.com", "RESOLVED"),
    ]
    later = list_episodes(table, since=START + timedelta(hours=1))
    assert [e["rule"] for e in later] == ["IP_AUTH_FAILURES", "SUSPICIOUS_IP"]
