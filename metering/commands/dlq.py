"""`metering dlq list` and `metering dlq redrive`: read the dead-letter queue and re-drive it.

SQS cannot peek. Both commands make one pass over the queue: they receive its messages with a
visibility timeout, so no message comes twice in a pass, and a pass ends at an empty receive (or
when a message comes back all the same). Every message they keep is then made visible again at
once (ChangeMessageVisibility 0): `list` changes nothing but each message's receive count.

A replay after a crash can dead-letter one record twice. Messages are grouped by the record's
position (shard, sequence, sub-sequence, and the index of a log event or a batch's event): `list`
shows each record once with its copies, and `redrive` puts each record back once, then deletes all
its copies; of a record still bad, it keeps one copy and deletes the others.

The copies are deleted only after PutRecords accepted the record, so a crash between the two puts
the record again on the next run. It is counted once all the same: every re-driven record carries
its origin (`redriveOrigin`), and the consumer counts one origin once (consumer/EXACTLY_ONCE.md).
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
from rich.console import Console
from rich.table import Table

from consumer import aws
from consumer.core.access_logs import decode_log_record
from consumer.core.batch import decode_batch
from consumer.core.events import InvalidEvent, Reason, decode_event, utc_now
from consumer.errors import MeteringError
from consumer.faults import FaultPoints
from consumer.settings import ConsumerSettings
from consumer.sinks.dead_letters import DeadLetter, RecordId, pack_batches, queue_url
from contract.batch import encode_batch, is_batch
from contract.events import origin_id
from contract.retry import Retry

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_sqs import SQSClient

PEEK_VISIBILITY_SECONDS = 60
REDRIVE_VISIBILITY_SECONDS = 300
PUT_RECORDS_MAX = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024  # data and partition keys of one PutRecords call
_PUT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    receipt_handle: str
    letter: DeadLetter | None  # None: the body is not a dead-letter document
    problem: str = ""


@dataclass(slots=True)
class Record:
    """One dead-lettered record and every message that holds it."""

    letter: DeadLetter
    copies: list[Message]
    redriven: bytes = b""  # what goes back on the stream (`redriven_data`)


class StillBad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(slots=True)
class Pass:
    """What one pass over the queue received."""

    records: dict[RecordId, Record] = field(default_factory=dict)
    foreign: list[Message] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return [m for r in self.records.values() for m in r.copies] + self.foreign

    def add(self, message: Message) -> None:
        if message.letter is None:
            self.foreign.append(message)
        elif message.letter.record_id in self.records:
            self.records[message.letter.record_id].copies.append(message)
        else:
            self.records[message.letter.record_id] = Record(message.letter, [message])


@dataclass(slots=True)
class RedriveReport:
    dry_run: bool
    redriven: list[DeadLetter] = field(default_factory=list)
    still_bad: list[tuple[DeadLetter, str, str]] = field(default_factory=list)  # letter, reason, detail
    put_failed: list[DeadLetter] = field(default_factory=list)
    copies_deleted: int = 0
    foreign: int = 0

    def summary(self) -> str:
        verb = "would re-drive" if self.dry_run else "re-drove"
        text = f"{verb} {len(self.redriven)} records; {len(self.still_bad)} still bad (kept in the queue)"
        if self.copies_deleted:
            text += f"; deleted {self.copies_deleted} duplicate copies"
        if self.put_failed:
            text += f"; {len(self.put_failed)} could not be put back (kept, try again)"
        if self.foreign:
            text += f"; {self.foreign} messages are not dead-letter documents (kept)"
        return text


# -- the queue ---------------------------------------------------------------------------------


def receive_pass(
    sqs: SQSClient, url: str, *, visibility: int, wait_seconds: int = 1, limit: int | None = None
) -> Pass:
    """Receive the queue's messages once each (up to `limit` distinct records); none is deleted."""
    received = Pass()
    rest = _fill(received, _receive(sqs, url, visibility, wait_seconds), limit)
    release(sqs, url, rest)  # received with the last batch but not part of the pass: visible again now
    return received


def _fill(received: Pass, batches: Iterator[list[Message]], limit: int | None) -> list[Message]:
    """Add messages until the pass goes round or holds `limit` records; return the batch's rest."""
    seen: set[str] = set()
    for batch in batches:
        for i, message in enumerate(batch):
            if message.message_id in seen:  # its visibility ran out: the pass has gone round
                return batch[i:]
            seen.add(message.message_id)
            received.add(message)
            if limit is not None and len(received.records) + len(received.foreign) >= limit:
                return batch[i + 1 :]
    return []


def _receive(sqs: SQSClient, url: str, visibility: int, wait_seconds: int) -> Iterator[list[Message]]:
    while True:
        reply = _call(
            "ReceiveMessage",
            sqs.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=wait_seconds,
        )
        messages = reply.get("Messages", [])
        if not messages:
            return
        yield [_message(raw) for raw in messages]


def _message(raw: Any) -> Message:
    try:
        letter, problem = DeadLetter.from_message(raw["Body"]), ""
    except ValueError as exc:
        letter, problem = None, str(exc)
    return Message(raw["MessageId"], raw["ReceiptHandle"], letter, problem)


def release(sqs: SQSClient, url: str, messages: list[Message]) -> None:
    """Make received messages visible again now."""
    for chunk in _chunks(messages, 10):
        _call(
            "ChangeMessageVisibilityBatch",
            sqs.change_message_visibility_batch,
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def delete(sqs: SQSClient, url: str, messages: list[Message]) -> None:
    for chunk in _chunks(messages, 10):
        reply = _call(
            "DeleteMessageBatch",
            sqs.delete_message_batch,
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)],
        )
        if reply.get("Failed"):
            raise MeteringError(f"DeleteMessageBatch failed: {reply['Failed'][0]}")


# -- list --------------------------------------------------------------------------------------


def list_dead_letters(sqs: SQSClient, url: str, *, limit: int, wait_seconds: int = 1) -> Pass:
    received = receive_pass(
        sqs, url, visibility=PEEK_VISIBILITY_SECONDS, wait_seconds=wait_seconds, limit=limit
    )
    release(sqs, url, received.messages)
    return received


def render_list(received: Pass) -> Table:
    table = Table(title="dead letters (one row per record; replays can leave copies)")
    for column in ("arrived", "shard", "sequence", "reason", "detail", "copies"):
        table.add_column(column, overflow="fold")
    records = sorted(received.records.values(), key=lambda r: (r.letter.arrived_at, str(r.letter.record_id)))
    for record in records:
        letter = record.letter
        sequence = letter.sequence_number
        if letter.sub_sequence_number:
            sequence += f"/{letter.sub_sequence_number}"
        part = letter.record_id[3]
        if part is not None:  # one log event, or one event of a batch
            sequence += f" #{part}"
        table.add_row(
            letter.arrived_at,
            letter.shard_id,
            sequence,
            letter.reason,
            letter.detail[:120],
            str(len(record.copies)),
        )
    for message in received.foreign:
        table.add_row("?", "?", "?", "FOREIGN_MESSAGE", message.problem[:120], "1")
    return table


# -- redrive -----------------------------------------------------------------------------------


def redrive(
    sqs: SQSClient,
    kinesis: KinesisClient,
    url: str,
    stream: str,
    *,
    dry_run: bool,
    now: Callable[[], datetime] = utc_now,
    wait_seconds: int = 1,
    sleep: Callable[[float], None] = time.sleep,
    faults: FaultPoints | None = None,
    visibility_seconds: int = REDRIVE_VISIBILITY_SECONDS,
) -> RedriveReport:
    """Put back on the stream every record the current decoder accepts; keep the others."""
    faults = faults or FaultPoints()
    received = receive_pass(sqs, url, visibility=visibility_seconds, wait_seconds=wait_seconds)
    report = RedriveReport(dry_run=dry_run, foreign=len(received.foreign))
    keep: list[Message] = list(received.foreign)
    fixed: list[Record] = []
    surplus: list[Message] = []
    at = now()
    for record in received.records.values():
        try:
            record.redriven = redriven_data(record.letter, at)
        except StillBad as bad:
            report.still_bad.append((record.letter, bad.reason, bad.detail))
            keep.append(record.copies[0])
            surplus.extend(record.copies[1:])  # the same record again: one copy is enough
        else:
            fixed.append(record)
    if dry_run:
        report.redriven = [r.letter for r in fixed]
        release(sqs, url, received.messages)
        return report
    delete(sqs, url, surplus)
    accepted, failed = _put(kinesis, stream, fixed, sleep)
    faults.hit("redrive-put")  # a crash here puts these records again next time: counted once all the same
    # Only records PutRecords accepted lose their messages.
    delete(sqs, url, [m for r in accepted for m in r.copies])
    report.redriven = [r.letter for r in accepted]
    report.put_failed = [r.letter for r in failed]
    report.copies_deleted = len(surplus) + sum(len(r.copies) - 1 for r in accepted)
    release(sqs, url, keep + [m for r in failed for m in r.copies])
    return report


def redriven_data(letter: DeadLetter, at: datetime) -> bytes:
    """The record as it goes back, carrying `redriveOrigin`: the first place it was dead-lettered from
    (a record re-driven before keeps its origin), so that the consumer counts it once however many
    times it is put back. A usage event (alone, or one event of a batch) goes back with the field
    added; a log event goes back in an envelope of its own, as CloudWatch Logs would send it; a usage
    batch dead-lettered whole goes back as a batch, each event carrying its own origin (the record's
    and its index). `StillBad` if the current decoder refuses it in that form.
    """
    if letter.data_truncated:
        raise StillBad(letter.reason, f"only a prefix of the {letter.data_bytes} bytes was kept")
    origin = origin_id(*letter.record_id)
    try:
        if letter.log_event is not None:
            return _log_envelope(letter.data, origin, at)
        if letter.batch_event is None and is_batch(letter.data):
            return _batch_back(letter, at)
        decode_event(letter.data, at)
        data = _with_origin(letter.data, origin)
        decode_event(data, at)
    except InvalidEvent as error:
        raise StillBad(str(error.reason), error.detail) from None
    return data


def _with_origin(event: bytes, origin: str) -> bytes:
    """A usage event with `redriveOrigin` added, unless it has one (it keeps its first origin)."""
    document = msgspec.json.decode(event)  # keeps every field as sent (wide integers too)
    document.setdefault("redriveOrigin", origin)
    return msgspec.json.encode(document)


def _batch_back(letter: DeadLetter, at: datetime) -> bytes:
    """A batch dead-lettered whole (the decoder failed on it), as it goes back: still bad unless every
    event of it counts now, or if its events no longer fit one batch with their origins."""
    place = (letter.shard_id, letter.sequence_number, letter.sub_sequence_number)
    batch = decode_batch(letter.data, at)
    if batch.rejected:
        index, error, _ = batch.rejected[0]
        raise InvalidEvent(error.reason, f"event {index}: {error.detail}")
    try:
        data = encode_batch([_with_origin(raw, origin_id(*place, index)) for index, _, raw in batch.events])
    except ValueError as exc:
        raise InvalidEvent(Reason.BATCH_INVALID, f"cannot be put back with its origins: {exc}") from None
    decode_batch(data, at)
    return data


def _log_envelope(log_event: bytes, origin: str, at: datetime) -> bytes:
    """A one-event CloudWatch Logs envelope around a dead-lettered log event; still bad if it is."""
    envelope = {"messageType": "DATA_MESSAGE", "logEvents": [msgspec.Raw(log_event)], "redriveOrigin": origin}
    data = gzip.compress(msgspec.json.encode(envelope), mtime=0)
    [(_, decoded)] = decode_log_record(data, at).events
    if isinstance(decoded, InvalidEvent):
        raise decoded
    return data


def _put(
    kinesis: KinesisClient, stream: str, records: list[Record], sleep: Callable[[float], None]
) -> tuple[list[Record], list[Record]]:
    """PutRecords in batches, retrying failed entries; the records accepted and those not."""
    accepted: list[Record] = []
    failed: list[Record] = []
    retry = Retry((_Unaccepted,), attempts=_PUT_ATTEMPTS, base=0.4, sleep=sleep)
    for batch in pack_batches(records, PUT_RECORDS_MAX, PUT_RECORDS_MAX_BYTES, size=_put_size):
        pending = batch

        def put_pending() -> None:
            nonlocal pending
            reply = _call(
                "PutRecords",
                kinesis.put_records,
                StreamName=stream,
                Records=[{"Data": r.redriven, "PartitionKey": r.letter.partition_key} for r in pending],
            )
            results = list(zip(pending, reply["Records"], strict=True))
            accepted.extend(record for record, result in results if "ErrorCode" not in result)
            pending = [record for record, result in results if "ErrorCode" in result]
            if pending:
                raise _Unaccepted(f"{len(pending)} records refused (throttled)")

        try:
            retry.call(put_pending)
        except _Unaccepted:
            failed += pending
    return accepted, failed


class _Unaccepted(Exception):
    """PutRecords refused some records for the moment (throttling); they are put again."""


def _put_size(record: Record) -> int:
    return len(record.redriven) + len(record.letter.partition_key.encode())


# -- the commands ------------------------------------------------------------------------------


def list_command(settings: ConsumerSettings, *, limit: int, console: Console | None = None) -> None:
    sqs: SQSClient = aws.client("sqs", settings.region)
    received = list_dead_letters(sqs, queue_url(sqs, settings.dlq_name), limit=limit)
    console = console or Console()
    console.print(render_list(received))
    copies = len(received.messages) - len(received.foreign)
    console.print(f"{len(received.records)} records in {copies} messages ({settings.dlq_name})")


def redrive_command(
    settings: ConsumerSettings,
    *,
    dry_run: bool,
    visibility_seconds: int = REDRIVE_VISIBILITY_SECONDS,
    console: Console | None = None,
) -> int:
    sqs: SQSClient = aws.client("sqs", settings.region)
    kinesis: KinesisClient = aws.client("kinesis", settings.region)
    faults = FaultPoints.from_spec(os.environ.get("METERING_FAULT"))
    url = queue_url(sqs, settings.dlq_name)
    report = redrive(
        sqs,
        kinesis,
        url,
        settings.stream_name,
        dry_run=dry_run,
        faults=faults,
        visibility_seconds=visibility_seconds,
    )
    console = console or Console()
    if report.still_bad:
        table = Table(title="still bad")
        for column in ("arrived", "shard", "sequence", "reason", "detail"):
            table.add_column(column, overflow="fold")
        for letter, reason, detail in report.still_bad:
            table.add_row(letter.arrived_at, letter.shard_id, letter.sequence_number, reason, detail[:120])
        console.print(table)
    console.print(report.summary())
    return 1 if report.put_failed else 0


def _call(what: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    with aws.translated(what):
        return method(**kwargs)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
