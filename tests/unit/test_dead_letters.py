"""Dead-letter messages: their document, sizes and truncation, and batched writes (fake SQS)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec
import orjson
import pytest
import structlog
from amazon_kclpy.messages import Record
from botocore.exceptions import ClientError, EndpointConnectionError

from consumer import kcl_protocol
from consumer.core.events import InvalidEvent, Reason
from consumer.errors import Misconfigured, SinkUnavailable
from consumer.sinks.dead_letters import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    SqsDeadLetters,
    dead_letter,
    pack_batches,
    queue_url,
)
from consumer.testing import FakeClock, kcl_record

SHARD = "shardId-000000000001"


class FakeSqs:
    """SendMessageBatch in memory; the first `failures` calls fail their entries (or raise)."""

    def __init__(self, failures: int = 0, sender_fault: bool = False) -> None:
        self.bodies: list[str] = []
        self.calls: list[int] = []
        self.failures = failures
        self.sender_fault = sender_fault

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append(len(Entries))
        assert len(Entries) <= 10
        assert sum(len(e["MessageBody"].encode()) for e in Entries) <= MAX_MESSAGE_BYTES
        if self.failures:
            self.failures -= 1
            # The first entry of the batch fails; the others are written.
            first, rest = Entries[0], Entries[1:]
            self.bodies += [e["MessageBody"] for e in rest]
            failed = {"Id": first["Id"], "SenderFault": self.sender_fault, "Code": "InternalError"}
            return {"Successful": [{"Id": e["Id"]} for e in rest], "Failed": [failed]}
        self.bodies += [e["MessageBody"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        error = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": QueueName}}
        raise ClientError(error, "GetQueueUrl")


class OutageSqs(FakeSqs):
    """SQS unreachable for the first `outage_calls` calls (connection refused), then fine."""

    def __init__(self, outage_calls: int) -> None:
        super().__init__()
        self.outage_calls = outage_calls

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        if self.outage_calls:
            self.outage_calls -= 1
            raise EndpointConnectionError(endpoint_url=QueueUrl)
        return super().send_message_batch(QueueUrl, Entries)


def _record(sequence: int, data: bytes) -> Record:
    return Record(kcl_record(sequence, data) | {"partitionKey": "user-hash"})


def _letter(data: bytes, reason: Reason = Reason.OVERSIZE) -> DeadLetter:
    return dead_letter(
        SHARD, _record(7, data), InvalidEvent(reason, "why"), stream="the-stream", application="the-app"
    )


def _dead_letters(sqs: FakeSqs, clock: FakeClock | None = None) -> SqsDeadLetters:
    clock = clock or FakeClock()
    return SqsDeadLetters(
        sqs,
        "https://queue",
        stream="s",
        application="a",
        log=structlog.get_logger("test"),
        retry_for=30,
        sleep=clock.advance,
        monotonic=clock,
    )


def test_message_holds_the_record_and_its_place() -> None:
    """A message is a versioned document with the data (base64), position, arrival, reason."""
    document = orjson.loads(_letter(b"{not json", Reason.NOT_JSON).to_message())
    assert document == {
        "version": 1,
        "shardId": SHARD,
        "sequenceNumber": "7",
        "subSequenceNumber": 0,
        "partitionKey": "user-hash",
        "arrivedAt": "2026-11-25T00:00:00.000Z",
        "reason": "NOT_JSON",
        "detail": "why",
        "stream": "the-stream",
        "application": "the-app",
        "dataBytes": 9,
        "data": base64.b64encode(b"{not json").decode(),
    }


def test_a_record_without_an_arrival_time_is_dead_lettered_with_an_empty_arrival() -> None:
    """A record the daemon sent without an arrival time still makes a message, `arrivedAt` empty."""
    record = msgspec.convert(kcl_record(7, b"{not json", arrived=None), kcl_protocol.Record)
    letter = dead_letter(SHARD, record, InvalidEvent(Reason.NOT_JSON, "why"), stream="s", application="a")
    document = orjson.loads(letter.to_message())
    assert document["arrivedAt"] == "" and DeadLetter.from_message(letter.to_message()) == letter


def test_message_round_trips() -> None:
    """Reading a message back gives the same dead letter, binary data included."""
    letter = _letter(bytes(range(256)))
    assert DeadLetter.from_message(letter.to_message()) == letter


def test_a_record_that_fits_keeps_all_its_data() -> None:
    """A 20 KiB oversize record (27 KiB of base64) is kept whole."""
    data = b"x" * 20 * 1024
    read = DeadLetter.from_message(_letter(data).to_message())
    assert read.data == data and not read.data_truncated


@pytest.mark.parametrize("size", [MAX_MESSAGE_BYTES, 1024 * 1024])
def test_a_record_too_big_keeps_a_prefix_and_its_hash(size: int) -> None:
    """Up to a 1 MiB record: the message stays within 256 KiB, with a prefix, the flag and the hash."""
    data = bytes(i % 251 for i in range(size))
    message = _letter(data).to_message()
    document = orjson.loads(message)
    assert MAX_MESSAGE_BYTES - 4 < len(message) <= MAX_MESSAGE_BYTES
    assert document["dataTruncated"] is True
    assert document["dataSha256"] == hashlib.sha256(data).hexdigest()
    assert document["dataBytes"] == size
    prefix = base64.b64decode(document["data"])
    assert len(prefix) > 190 * 1024 and data.startswith(prefix)


def test_long_detail_is_cut_and_unsafe_characters_replaced() -> None:
    """Details are cut to 500 characters; characters SQS refuses become U+FFFD."""
    letter = dead_letter(
        SHARD,
        Record(kcl_record(1, b"x") | {"partitionKey": "a\ufffeb"}),
        InvalidEvent(Reason.INVALID_FIELD, "d" * 5000),
        stream="s",
        application="a",
    )
    document = orjson.loads(letter.to_message())
    assert len(document["detail"]) == 500 and document["partitionKey"] == "a\ufffdb"


def test_batches_hold_ten_messages_and_256_kib_at_most() -> None:
    """SendMessageBatch limits: 10 entries and 256 KiB of bodies per call."""
    small = [b"s" * 100] * 25
    assert [len(b) for b in pack_batches(small)] == [10, 10, 5]
    big = [b"b" * 100_000] * 5
    assert [len(b) for b in pack_batches(big)] == [2, 2, 1]


def test_redrive_put_batches_stay_under_5_mib() -> None:
    """PutRecords limits: 500 records and 5 MiB; 500 re-drivable records of 16 KiB need two calls."""
    records = [(b"r" * 16 * 1024, "partition")] * 500
    batches = pack_batches(records, 500, 5 * 1024 * 1024, size=lambda r: len(r[0]) + len(r[1]))
    assert [len(b) for b in batches] == [319, 181]


def test_send_buffers_until_flush() -> None:
    """Nothing is written before flush; flush writes every buffered message once."""
    sqs = FakeSqs()
    dead_letters = _dead_letters(sqs)
    for sequence in range(1, 24):
        dead_letters.send(SHARD, _record(sequence, b"bad"), InvalidEvent(Reason.NOT_JSON, "x"))
    assert sqs.bodies == []
    dead_letters.flush()
    dead_letters.flush()
    assert sorted(sqs.calls) == [3, 10, 10] and len(sqs.bodies) == 23
    sequences = sorted(int(DeadLetter.from_message(b).sequence_number) for b in sqs.bodies)
    assert sequences == list(range(1, 24))


def test_failed_entries_are_retried_alone() -> None:
    """Entries SQS failed (not the sender's fault) are sent again, and only those."""
    sqs = FakeSqs(failures=2)
    dead_letters = _dead_letters(sqs)
    for sequence in range(1, 6):
        dead_letters.send(SHARD, _record(sequence, b"bad"), InvalidEvent(Reason.NOT_JSON, "x"))
    dead_letters.flush()
    assert sqs.calls == [5, 1, 1] and len(sqs.bodies) == 5 and dead_letters.pending == 0


def test_persistent_failure_rides_out_its_bound_then_raises_and_keeps_the_buffer() -> None:
    """Entries that keep failing are retried for WRITE_RETRY_SECONDS, then SinkUnavailable; kept."""
    sqs, clock = FakeSqs(failures=10_000), FakeClock()
    dead_letters = _dead_letters(sqs, clock)
    dead_letters.send(SHARD, _record(1, b"bad"), InvalidEvent(Reason.NOT_JSON, "x"))
    with pytest.raises(SinkUnavailable):
        dead_letters.flush()
    assert dead_letters.pending == 1
    # The bound plus one last round of refusal retries (at most 0.2 + 0.4 + 0.8 + 1.6 s of waits).
    assert 30 <= clock.now < 30 + 3.0 and len(sqs.calls) > 5


def test_an_sqs_outage_is_ridden_out() -> None:
    """SendMessageBatch failing outright for a while (an outage) delays the flush, loses nothing."""
    sqs, clock = OutageSqs(outage_calls=6), FakeClock()
    dead_letters = _dead_letters(sqs, clock)
    dead_letters.send(SHARD, _record(1, b"bad"), InvalidEvent(Reason.NOT_JSON, "x"))
    dead_letters.flush()
    assert len(sqs.bodies) == 1 and dead_letters.pending == 0 and clock.now < 30


def test_sender_fault_is_not_retried() -> None:
    """A message SQS refuses as malformed fails the flush at once: retrying cannot help."""
    sqs = FakeSqs(failures=1, sender_fault=True)
    dead_letters = _dead_letters(sqs)
    dead_letters.send(SHARD, _record(1, b"bad"), InvalidEvent(Reason.NOT_JSON, "x"))
    with pytest.raises(Misconfigured):
        dead_letters.flush()
    assert sqs.calls == [1]


def test_log_line_has_no_data() -> None:
    """The log line says where and why, never the record's data (it may hold personal data)."""
    with structlog.testing.capture_logs() as logs:
        _dead_letters(FakeSqs()).send(
            SHARD, _record(3, b'{"userEmail":"secret@x.io"'), InvalidEvent(Reason.NOT_JSON, "eof")
        )
    assert logs[0]["event"] == "record_dead_lettered" and logs[0]["reason"] == "NOT_JSON"
    assert "secret" not in repr(logs)


def test_missing_queue_is_a_configuration_error() -> None:
    """A queue that does not exist stops start-up with a message naming DLQ_NAME."""
    with pytest.raises(Misconfigured, match=r"DLQ_NAME='nope'.*metering provision"):
        queue_url(FakeSqs(), "nope")
