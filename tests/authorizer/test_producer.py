"""Tests of the fire-and-forget producer: counting, bounding, and dead endpoints."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from authorizer.clients import kinesis_client
from authorizer.producer import KinesisProducer
from authorizer.settings import Settings
from tests.authorizer.conftest import closed_port

EVENT = {"userEmail": "ada@example.com", "sourceIp": "1.2.3.4", "eventType": "API_CALL"}


class FakeKinesis:
    """Records PutRecords calls; can fail them, reject some records, or block until released."""

    def __init__(self, error: Exception | None = None, reject: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.error = error
        self.reject = reject
        self.gate = threading.Event()
        self.gate.set()

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.gate.wait()
        if self.error:
            raise self.error
        self.batches.append(Records)
        return {"FailedRecordCount": min(self.reject, len(Records)), "Records": []}


def test_events_are_batched_and_counted() -> None:
    """Queued events go out in PutRecords batches, each record with the user's partition key."""
    fake = FakeKinesis()
    fake.gate.clear()
    producer = KinesisProducer(fake, "stream")  # type: ignore[arg-type]
    for _ in range(700):
        producer.emit(EVENT)
    fake.gate.set()
    assert producer.flush(5)
    assert sum(len(batch) for batch in fake.batches) == 700
    assert max(len(batch) for batch in fake.batches) <= 500
    assert producer.stats().sent == 700 and producer.stats().pending == 0
    assert len({record["PartitionKey"] for batch in fake.batches for record in batch}) == 1


def test_failures_are_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A failing call counts its records as failed and logs, without raising into the emitter."""
    error = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutRecords")
    producer = KinesisProducer(FakeKinesis(error=error), "stream")  # type: ignore[arg-type]
    producer.emit(EVENT)
    assert producer.flush(5)
    assert (producer.stats().sent, producer.stats().failed) == (0, 1)
    assert "ProvisionedThroughputExceededException" in caplog.text


def test_an_unexpected_error_neither_stops_the_sender_nor_blocks_flush() -> None:
    """Any exception from the client (not only botocore's) costs its batch, nothing more."""
    fake = FakeKinesis(error=RuntimeError("bug in a client plugin"))
    producer = KinesisProducer(fake, "stream")  # type: ignore[arg-type]
    producer.emit(EVENT)
    assert producer.flush(5)
    fake.error = None
    producer.emit(EVENT)
    assert producer.flush(5)
    assert (producer.stats().sent, producer.stats().failed, producer.stats().pending) == (1, 1, 0)


def test_partial_rejections_are_counted() -> None:
    """Records Kinesis rejects inside a successful call count as failed."""
    producer = KinesisProducer(FakeKinesis(reject=1), "stream")  # type: ignore[arg-type]
    producer.emit(EVENT)
    producer.emit(EVENT)
    producer.flush(5)
    stats = producer.stats()
    assert stats.sent + stats.failed == 2 and stats.failed >= 1


def test_full_queue_drops_instead_of_blocking() -> None:
    """When the sender is stuck, emit stays instant and drops past the queue's bound."""
    fake = FakeKinesis()
    fake.gate.clear()
    producer = KinesisProducer(fake, "stream", max_queue=10)  # type: ignore[arg-type]
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
    defaults = Settings()
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
