"""The dead-letter queue against moto in-process: send, flush, list, re-drive; and a failed flush."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest
import structlog
from amazon_kclpy.messages import Record
from moto import mock_aws

from consumer.core.events import InvalidEvent, Reason, decode_event
from consumer.errors import Misconfigured
from consumer.processor import UsageRecordProcessor
from consumer.sinks.dead_letters import DeadLetter, SqsDeadLetters, dead_letter, queue_url
from consumer.sinks.memory import MemorySink
from consumer.testing import RecordingDeadLetters, ScriptedDaemon, event, kcl_record
from contract.events import MAX_EVENT_BYTES
from metering.commands import dlq

SHARD = "shardId-000000000000"
STREAM = "usage"
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, str]]:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_KINESIS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName=STREAM, ShardCount=1)
        url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        yield sqs, kinesis, url


def _dead_letters(sqs: Any, url: str) -> SqsDeadLetters:
    return SqsDeadLetters(sqs, url, stream=STREAM, application="app", log=structlog.get_logger("test"))


def _send(dead_letters: SqsDeadLetters, sequence: int, data: bytes, now: datetime = NOW) -> None:
    record = Record(kcl_record(sequence, data) | {"partitionKey": f"pk-{sequence}"})
    try:
        decode_event(data, now)
    except InvalidEvent as error:
        dead_letters.send(SHARD, record, error)
    else:
        raise AssertionError("a valid record")


def _stream_data(kinesis: Any) -> list[tuple[bytes, str]]:
    shard = kinesis.list_shards(StreamName=STREAM)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return [(r["Data"], r["PartitionKey"]) for r in records]


def _send_not_json(dead_letters: SqsDeadLetters, count: int) -> None:
    """Records 1..count, each a different non-JSON record, dead-lettered and flushed."""
    for sequence in range(1, count + 1):
        _send(dead_letters, sequence, b"not json %d" % sequence)
    dead_letters.flush()


def test_flushed_dead_letters_are_listed_once_per_record(aws: tuple[Any, Any, str]) -> None:
    """A replay sends a record twice: the list shows it once, with two copies, and deletes nothing."""
    sqs, _kinesis, url = aws
    dead_letters = _dead_letters(sqs, url)
    _send_not_json(dead_letters, 14)
    _send(dead_letters, 3, b"not json 3")  # the replay after a crash
    dead_letters.flush()
    listed = dlq.list_dead_letters(sqs, url, limit=100, wait_seconds=0)
    assert len(listed.records) == 14 and len(listed.messages) == 15
    copies = {r.letter.sequence_number: len(r.copies) for r in listed.records.values()}
    assert copies["3"] == 2
    again = dlq.list_dead_letters(sqs, url, limit=100, wait_seconds=0)
    assert len(again.messages) == 15, "listing must leave every message visible"
    assert len(dlq.list_dead_letters(sqs, url, limit=5, wait_seconds=0).records) == 5


def test_a_limited_list_leaves_every_message_visible(aws: tuple[Any, Any, str]) -> None:
    """`list --limit` stops inside a receive of 10: the batch's other messages are released too."""
    sqs, _kinesis, url = aws
    dead_letters = _dead_letters(sqs, url)
    _send_not_json(dead_letters, 25)
    assert len(dlq.list_dead_letters(sqs, url, limit=5, wait_seconds=0).records) == 5
    assert len(dlq.list_dead_letters(sqs, url, limit=100, wait_seconds=0).records) == 25


def test_redrive_puts_back_what_now_decodes_and_keeps_the_rest(aws: tuple[Any, Any, str]) -> None:
    """Fixed records go back on the stream once (original key), copies deleted; bad ones stay, one copy."""
    sqs, kinesis, url = aws
    dead_letters = _dead_letters(sqs, url)
    soon = orjson.dumps(event(at=NOW + timedelta(minutes=10)))
    _send(dead_letters, 1, soon)  # FUTURE_TIMESTAMP now; fine once its time has come
    _send(dead_letters, 1, soon)  # a replayed copy
    _send(dead_letters, 2, b"[1]")
    _send(dead_letters, 2, b"[1]")
    _send(dead_letters, 3, b'{"version":1,"eventType":"API_CALL","path":"\xff"}')
    dead_letters.flush()

    dry = dlq.redrive(
        sqs, kinesis, url, STREAM, dry_run=True, now=lambda: NOW + timedelta(minutes=6), wait_seconds=0
    )
    assert [d.sequence_number for d in dry.redriven] == ["1"] and _stream_data(kinesis) == []
    assert len(dlq.list_dead_letters(sqs, url, limit=100, wait_seconds=0).messages) == 5

    report = dlq.redrive(
        sqs, kinesis, url, STREAM, dry_run=False, now=lambda: NOW + timedelta(minutes=6), wait_seconds=0
    )
    assert [d.sequence_number for d in report.redriven] == ["1"]
    assert sorted((d.sequence_number, reason) for d, reason, _ in report.still_bad) == [
        ("2", "INVALID_FIELD"),
        ("3", "NOT_JSON"),
    ]
    assert report.copies_deleted == 2  # one surplus copy of record 1 and one of record 2
    [(data, partition_key)] = _stream_data(kinesis)
    assert (orjson.loads(data), partition_key) == (
        orjson.loads(soon) | {"redriveOrigin": f"{SHARD}/1/0"},
        "pk-1",
    )
    left = dlq.list_dead_letters(sqs, url, limit=100, wait_seconds=0)
    assert sorted(r.letter.sequence_number for r in left.records.values()) == ["2", "3"]
    assert len(left.messages) == 2

    # Idempotent: a second run puts nothing more.
    again = dlq.redrive(
        sqs, kinesis, url, STREAM, dry_run=False, now=lambda: NOW + timedelta(minutes=6), wait_seconds=0
    )
    assert again.redriven == [] and len(_stream_data(kinesis)) == 1


class ThrottlingKinesis:
    """Rejects one record the first time, and the records of user "stuck" every time."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        first = not self.calls
        self.calls.append(len(Records))
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException"}
            if b"stuck" in r["Data"] or (first and i == 0)
            else {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}
            for i, r in enumerate(Records)
        ]
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def test_redrive_retries_rejected_records_and_keeps_what_never_went_in(aws: tuple[Any, Any, str]) -> None:
    """A throttled record is retried; one rejected every time keeps its copies in the queue."""
    sqs, _kinesis, url = aws
    dead_letters = _dead_letters(sqs, url)
    soon = NOW + timedelta(minutes=10)
    for sequence, email in [(1, "ada@example.com"), (2, "bob@example.com"), (3, "stuck@example.com")]:
        _send(dead_letters, sequence, orjson.dumps(event(at=soon, email=email)))
    _send(dead_letters, 3, orjson.dumps(event(at=soon, email="stuck@example.com")))
    dead_letters.flush()
    kinesis = ThrottlingKinesis()
    report = dlq.redrive(
        sqs, kinesis, url, STREAM, dry_run=False, now=lambda: soon, wait_seconds=0, sleep=lambda _: None
    )
    assert sorted(d.sequence_number for d in report.redriven) == ["1", "2"]
    assert [d.sequence_number for d in report.put_failed] == ["3"]
    assert kinesis.calls == [3, 2, 1, 1, 1]  # one retry per attempt left, of what is still rejected
    left = dlq.list_dead_letters(sqs, url, limit=100, wait_seconds=0)
    assert [r.letter.sequence_number for r in left.records.values()] == ["3"] and len(left.messages) == 2


def test_redrive_keeps_truncated_records(aws: tuple[Any, Any, str]) -> None:
    """A record kept as a prefix cannot be put back: it stays in the queue."""
    sqs, kinesis, url = aws
    dead_letters = _dead_letters(sqs, url)
    _send(dead_letters, 1, b"{" + b" " * (400 * 1024) + b"}")
    dead_letters.flush()
    listed = dlq.list_dead_letters(sqs, url, limit=10, wait_seconds=0)
    assert next(iter(listed.records.values())).letter.data_truncated
    report = dlq.redrive(sqs, kinesis, url, STREAM, dry_run=False, wait_seconds=0)
    assert report.redriven == [] and len(report.still_bad) == 1
    assert len(dlq.list_dead_letters(sqs, url, limit=10, wait_seconds=0).messages) == 1


def test_foreign_messages_are_listed_and_kept(aws: tuple[Any, Any, str]) -> None:
    """A message that is not a dead-letter document is shown and left alone."""
    sqs, kinesis, url = aws
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert len(dlq.list_dead_letters(sqs, url, limit=10, wait_seconds=0).foreign) == 1
    assert dlq.redrive(sqs, kinesis, url, STREAM, dry_run=False, wait_seconds=0).foreign == 1
    assert len(dlq.list_dead_letters(sqs, url, limit=10, wait_seconds=0).foreign) == 1


class BrokenSqs:
    """SendMessageBatch always fails, as when SQS is unreachable."""

    def send_message_batch(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Successful": [], "Failed": [{"Id": "0", "SenderFault": False, "Code": "ServiceUnavailable"}]}


def test_dead_letter_flush_failure_exits_without_checkpoint() -> None:
    """If the dead letters cannot be written, the child exits before any checkpoint passes them."""
    sink = MemorySink()
    log = structlog.get_logger("test")
    dead_letters = SqsDeadLetters(
        BrokenSqs(),
        "https://queue",
        stream=STREAM,
        application="app",
        log=log,
        sleep=lambda _s: None,
    )
    processor = UsageRecordProcessor(sink, dead_letters, log, flush_interval=5.0, now=lambda: NOW)
    records = [(1, orjson.dumps(event())), (2, b"{broken"), (3, orjson.dumps(event()))]
    daemon = ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested()
    with pytest.raises(SystemExit):
        daemon.run(processor)
    assert daemon.checkpoints == [] and sink.items == {}


def test_base64_of_the_original_bytes_is_kept(aws: tuple[Any, Any, str]) -> None:
    """Non-UTF-8 bytes survive the queue unchanged."""
    sqs, _kinesis, url = aws
    dead_letters = _dead_letters(sqs, url)
    _send(dead_letters, 1, b"\xff\xfe\x00\x01")
    dead_letters.flush()
    body = sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"]
    assert base64.b64decode(orjson.loads(body)["data"]) == b"\xff\xfe\x00\x01"


def test_bad_utf8_inside_a_string_is_dead_lettered_not_a_crash() -> None:
    """Non-UTF-8 bytes inside a JSON string are NOT_JSON, and the valid records around them count."""
    sink, dead_letters = MemorySink(), RecordingDeadLetters()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(sink, dead_letters, log, flush_interval=5.0, now=lambda: NOW)
    records = [(1, orjson.dumps(event())), (2, b'{"version":1,"path":"\xff"}'), (3, orjson.dumps(event()))]
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(processor)
    assert dead_letters.reasons == ["NOT_JSON"]


def test_missing_queue_stops_start_up_naming_the_setting(aws: tuple[Any, Any, str]) -> None:
    """get_queue_url of a queue that does not exist is a configuration error naming DLQ_NAME."""
    sqs, _kinesis, _url = aws
    with pytest.raises(Misconfigured, match=r"DLQ_NAME='missing'.*metering provision"):
        queue_url(sqs, "missing")


def _letter(data: bytes, sequence: int = 7) -> DeadLetter:
    record = Record(kcl_record(sequence, data) | {"partitionKey": "pk"})
    return dead_letter(
        SHARD, record, InvalidEvent(Reason.FUTURE_TIMESTAMP, "x"), stream=STREAM, application="a"
    )


def test_a_redriven_record_carries_its_first_origin_and_every_field_as_sent() -> None:
    """The origin is the record's own place, or the one a previous re-drive gave it; wide integers
    and unknown fields pass through untouched."""
    sent = orjson.dumps(event(at=NOW))[:-1] + b',"extra":123456789012345678901234567890}'
    data = dlq.redriven_data(_letter(sent), NOW)
    assert data.startswith(sent[:-1]) and data.endswith(b',"redriveOrigin":"shardId-000000000000/7/0"}')
    again = dlq.redriven_data(_letter(data, sequence=99), NOW)  # dead-lettered again, re-driven again
    assert orjson.loads(again)["redriveOrigin"] == "shardId-000000000000/7/0"


def test_a_record_the_origin_would_push_over_the_limit_stays_in_the_queue() -> None:
    document = event(at=NOW)
    document["padding"] = ""  # a field producers may add
    document["padding"] = "p" * (MAX_EVENT_BYTES - len(orjson.dumps(document)))
    with pytest.raises(dlq.StillBad) as still_bad:
        dlq.redriven_data(_letter(orjson.dumps(document)), NOW)
    assert still_bad.value.reason == "OVERSIZE"
