"""The raw-event archive under load: a user sending 50,000 events in an hour, written by the real sink
to the emulator's DynamoDB (which enforces the 400 KB item limit), read back exactly once, in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.testing import event
from contract.table import ARCHIVE_PREFIX, analytics_table_spec
from reads import Table
from reads.usage import archived_events

HOUR = datetime(2026, 11, 24, 17, tzinfo=UTC)
USER = "heavy@example.com"
EVENTS = 50_000
ITEM_LIMIT = 400 * 1024


def test_fifty_thousand_events_of_one_user_in_an_hour_fit_in_pages_and_read_back_once(
    aws_env: dict[str, str],
) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    name = f"archive-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(**analytics_table_spec(name))
    aggregate = Aggregate()
    sent = []
    for n in range(EVENTS):
        payload = event(at=HOUR + timedelta(milliseconds=n * 72), email=USER, userAgent=f"load-test/{n}")
        data = orjson.dumps(payload)
        aggregate.add(decode_event(data, HOUR + timedelta(hours=1)), data)
        sent.append(payload["eventId"])
    batch = Batch(FlushRange("shardId-0", None, Position(str(EVENTS)).key()), aggregate, EVENTS)
    try:
        sink = DynamoDBSink(dynamodb, name, "app")
        sink.claim("shardId-0")
        sink.write(batch)
        pages = [
            page
            for reply in dynamodb.get_paginator("query").paginate(
                TableName=name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"{ARCHIVE_PREFIX}USER#{USER}"}},
            )
            for page in reply["Items"]
        ]
        sizes = [_size(page) for page in pages]
        print(
            f"\n{EVENTS} events in {len(pages)} pages, largest {max(sizes) / 1024:.0f} KiB,"
            f" {sum(sizes) / EVENTS:.0f} bytes stored per event"
        )
        assert max(sizes) < ITEM_LIMIT and len(pages) < EVENTS / 1000
        back = [
            e["eventId"]
            for e in archived_events(Table(dynamodb, name), f"USER#{USER}", HOUR, HOUR + timedelta(hours=1))
        ]
        assert back == sent  # in time order, each once
    finally:
        dynamodb.delete_table(TableName=name)


def _size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: names plus values (strings, numbers, bytes)."""
    return sum(
        len(name) + len(str(next(iter(value.values()))))
        for name, value in item.items()
        if "S" in value or "N" in value
    ) + sum(len(value["B"]) for value in item.values() if "B" in value)
