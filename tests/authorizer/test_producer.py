"""Tests of the fire-and-forget producer: counting, bounding, and dead endpoints."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from authorizer.clients import kinesis_client
from authorizer.decision import Caller, Decision, Outcome
from authorizer.events import build_event
from authorizer.producer import KinesisProducer
from authorizer.request import parse_request
from authorizer.settings import AuthorizerSettings
from contract.events import UsageEventV1
from tests.authorizer.conftest import closed_port, rest_event

EVENT: UsageEventV1 = build_event(
    Decision(Outcome.ALLOWED, Caller("abcdefghijkl", "ada@example.com", "free")),
    parse_request(rest_event()),
    "test",
    1_795_000_000.0,
)
THROTTLED = "ProvisionedThroughputExceededException"


class FakeKinesis:
    """PutRecords as Kinesis answers it (one result per record); can fail whole calls, refuse the
    first records of the first calls for the moment (throttling), or block until released."""

    def __init__(self, error: Exception | None = None, refuse: int = 0, refusing_calls: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.error = error
        self.refuse, self.refusing_calls = refuse, refusing_calls
        self.gate = threading.Event()
        self.gate.set()

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.gate.wait()
        if self.error:
            raise self.error
        refused = self.refuse if self.refusing_calls else 0
        self.refusing_calls = max(0, self.refusing_calls - 1)
        self.batches.append(Records[refused:])
        results = [{"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}] * min(
            refused, len(Records)
        )
        results += [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"}] * (
            len(Records) - len(results)
        )
        return {"FailedRecordCount": min(refused, len(Records)), "Records": results}


def test_events_are_batched_and_counted() -> None:
    """Queued events go out in PutRecords batches, each record with the user's partition key."""
    fake = FakeKinesis()
    fake.gate.clear()
    producer = KinesisProducer(fake, "stream")
    for _ in range(700):
        producer.emit(EVENT)
    fake.gate.set()
    assert producer.flush(5)
    assert sum(len(batch) for batch in fake.batches) == 700
    assert max(len(batch) for batch in fake.batches) <= 500
    assert producer.stats().sent == 700 and producer.stats().pending == 0
    assert len({record["PartitionKey"] for batch in fake.batches for record in batch}) == 1


def test_a_failing_call_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A call failing for good (a missing stream) counts its records as failed, at once, and logs."""
    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "PutRecords")
    producer = KinesisProducer(FakeKinesis(error=error), "stream")
    producer.emit(EVENT)
    assert producer.flush(5)
    assert (producer.stats().sent, producer.stats().failed, producer.stats().retried) == (0, 1, 0)
    assert "ResourceNotFoundException" in caplog.text


def test_an_unexpected_error_neither_stops_the_sender_nor_blocks_flush() -> None:
    """Any exception from the client (not only botocore's) costs its batch, nothing more."""
    fake = FakeKinesis(error=RuntimeError("bug in a client plugin"))
    producer = KinesisProducer(fake, "stream")
    producer.emit(EVENT)
    assert producer.flush(5)
    fake.error = None
    producer.emit(EVENT)
    assert producer.flush(5)
    assert (producer.stats().sent, producer.stats().failed, producer.stats().pending) == (1, 1, 0)


def test_throttled_records_are_put_again_within_the_budget() -> None:
    """Records a shard refuses over its quota are retried off the request path and then sent."""
    fake = FakeKinesis(refuse=2, refusing_calls=3)
    producer = KinesisProducer(fake, "stream", retry_seconds=5)
    for _ in range(5):
        producer.emit(EVENT)
    assert producer.flush(10)
    stats = producer.stats()
    assert (stats.sent, stats.failed, stats.retried) == (5, 0, 6)
    assert sum(len(batch) for batch in fake.batches) == 5


def test_records_still_throttled_past_the_budget_are_counted_as_failed() -> None:
    """The retry is bounded: past `retry_seconds`, what is still refused counts as failed."""
    fake = FakeKinesis(refuse=1, refusing_calls=10_000)
    producer = KinesisProducer(fake, "stream", retry_seconds=0.3)
    producer.emit(EVENT)
    producer.emit(EVENT)
    assert producer.flush(5)
    stats = producer.stats()
    assert (stats.sent, stats.failed) == (1, 1) and stats.retried >= 1
    throttled_call = ClientError({"Error": {"Code": THROTTLED}}, "PutRecords")
    producer = KinesisProducer(FakeKinesis(error=throttled_call), "stream", retry_seconds=0.3)
    producer.emit(EVENT)
    assert producer.flush(5)
    assert producer.stats().failed == 1 and producer.stats().retried >= 1


def test_full_queue_drops_instead_of_blocking() -> None:
    """When the sender is stuck, emit stays instant and drops past the queue's bound."""
    fake = FakeKinesis()
    fake.gate.clear()
    producer = KinesisProducer(fake, "stream", max_queue=10)
    started = time.perf_counter()
    for _ in range(100):
        producer.emit(EVENT)
    assert time.perf_counter() - started < 0.5
    assert not producer.flush(0.05)
    assert producer.stats().dropped >= 89
    fake.gate.set()
    assert producer.flush(5)


@pytest.mark.parametrize("dead", ["black_hole", "refused"])
def test_dead_endpoint_costs_the_emitter_nothing(request: pytest.FixtureRequest, dead: str) -> None:
    """Against a black-holed or refused endpoint, emit stays instant and the sender gives up quickly."""
    endpoint = request.getfixturevalue("black_hole") if dead == "black_hole" else closed_port()
    defaults = AuthorizerSettings()
    client = kinesis_client(
        connect_timeout=defaults.kinesis_connect_timeout_seconds,
        read_timeout=defaults.kinesis_read_timeout_seconds,
        endpoint_url=endpoint,
    )
    producer = KinesisProducer(client, "stream")
    started = time.perf_counter()
    producer.emit(EVENT)
    assert time.perf_counter() - started < 0.05
    assert producer.flush(2.0)  # one attempt, connect 0.1 s / read 0.3 s
    assert producer.stats().failed == 1
    producer.close(1)
