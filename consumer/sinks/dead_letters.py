"""The dead-letter queue: every record that cannot be counted, with its data and a reason.

One SQS message per record, a JSON document (`version` 1) holding the record's original bytes
(`data`, base64), its place in the stream (`shardId`, `sequenceNumber`, `subSequenceNumber`,
`partitionKey`), `arrivedAt` (the approximate arrival time, "" when the daemon gave none),
`reason`, `detail`, `stream` and `application`. One bad part of a good record goes alone, its
index beside the place: `logEvent` (a log event of an access-log record) or `batchEvent` (an event
of a usage batch, `contract.batch`).
A message is at most 256 KiB (the SQS limit older queues still have). A record too big for that (a
Kinesis record can be 1 MiB) keeps a prefix of its data, with `dataTruncated: true` and the whole
record's `dataSha256`; `dataBytes` is always the original length.

Messages are buffered by `send` and written by `flush`, which the processor calls before any
checkpoint passes them, riding out an SQS outage as a flush rides out a DynamoDB one. A replay
after a crash can therefore send a record twice: readers deduplicate by `record_id` (shard,
sequence, sub-sequence), see `metering.commands.dlq`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from consumer.aws import translated
from consumer.core.events import InvalidEvent
from consumer.errors import Misconfigured, SinkUnavailable
from contract.batch import is_batch
from contract.events import format_timestamp
from contract.retry import Retry

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DOCUMENT_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
BATCH_ENTRIES = 10
DETAIL_CHARS = 500
_SEND_ATTEMPTS = 5  # for the entries of one SendMessageBatch that SQS refused for the moment

T = TypeVar("T")
# Characters SQS refuses in a message body (orjson already escapes the control characters).
_UNSAFE = re.compile("[\ud800-\udfff\ufffe\uffff]")

RecordId = tuple[str, str, int, int | None]  # shard, sequence, sub-sequence, part's index (or None)
LogEvent = tuple[int, bytes]  # a bad part of a record (log event, batch event): its index, its JSON


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record as the queue holds it."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    arrived_at: str
    reason: str
    detail: str
    data: bytes
    data_bytes: int
    data_truncated: bool
    stream: str
    application: str
    log_event: int | None = None  # one log event of an access-log record: its index there
    batch_event: int | None = None  # one event of a usage batch: its index there

    @property
    def record_id(self) -> RecordId:
        """What identifies the record (or its part): two copies of one dead letter share it."""
        part = self.log_event if self.log_event is not None else self.batch_event
        return (self.shard_id, self.sequence_number, self.sub_sequence_number, part)

    def to_message(self, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
        """The message body, at most `max_bytes`: the data is cut to a prefix if it must be."""
        if self.data_truncated:
            raise ValueError("a truncated dead letter cannot be written again")
        document: dict[str, Any] = {
            "version": DOCUMENT_VERSION,
            "shardId": self.shard_id,
            "sequenceNumber": self.sequence_number,
            "subSequenceNumber": self.sub_sequence_number,
            "partitionKey": _safe(self.partition_key),
            "arrivedAt": self.arrived_at,
            "reason": self.reason,
            "detail": _safe(self.detail[:DETAIL_CHARS]),
            "stream": self.stream,
            "application": self.application,
            "dataBytes": self.data_bytes,
            "data": base64.b64encode(self.data).decode(),
        }
        if self.log_event is not None:
            document["logEvent"] = self.log_event
        if self.batch_event is not None:
            document["batchEvent"] = self.batch_event
        whole = orjson.dumps(document)
        if len(whole) <= max_bytes:
            return whole
        document |= {"data": "", "dataTruncated": True, "dataSha256": hashlib.sha256(self.data).hexdigest()}
        room = max_bytes - len(orjson.dumps(document))
        if room < 0:
            raise ValueError(f"a dead letter needs more than {max_bytes} bytes without its data")
        # base64 is 4 characters per 3 bytes and never escaped in JSON, so the size is exact.
        document["data"] = base64.b64encode(self.data[: room // 4 * 3]).decode()
        return orjson.dumps(document)

    @classmethod
    def from_message(cls, body: str | bytes) -> DeadLetter:
        """Parse a message body; `ValueError` if it is not a dead-letter document we know."""
        try:
            document = orjson.loads(body)
            if document["version"] != DOCUMENT_VERSION:
                raise ValueError(f"dead-letter document version {document['version']!r}")
            return cls(
                shard_id=str(document["shardId"]),
                sequence_number=str(document["sequenceNumber"]),
                sub_sequence_number=int(document["subSequenceNumber"]),
                partition_key=str(document["partitionKey"]),
                arrived_at=str(document["arrivedAt"]),
                reason=str(document["reason"]),
                detail=str(document.get("detail", "")),
                data=base64.b64decode(document["data"], validate=True),
                data_bytes=int(document["dataBytes"]),
                data_truncated=bool(document.get("dataTruncated", False)),
                stream=str(document.get("stream", "")),
                application=str(document.get("application", "")),
                log_event=_index(document.get("logEvent")),
                batch_event=_index(document.get("batchEvent")),
            )
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"not a dead-letter document: {exc}") from exc


def dead_letter(
    shard_id: str,
    record: Any,
    error: InvalidEvent,
    *,
    stream: str,
    application: str,
    log_event: LogEvent | None = None,
) -> DeadLetter:
    """A dead letter from an amazon_kclpy `Record` (or one part of it) and the decoder's error."""
    data: bytes = record.binary_data if log_event is None else log_event[1]
    part = None if log_event is None else log_event[0]
    in_batch = part is not None and is_batch(record.binary_data)
    millis = record.timestamp_millis  # None: the daemon did not know the arrival time
    arrived = None if millis is None else datetime.fromtimestamp(int(millis) / 1000, UTC)
    return DeadLetter(
        shard_id=shard_id,
        sequence_number=str(record.sequence_number),
        sub_sequence_number=int(record.sub_sequence_number or 0),
        partition_key=str(record.partition_key),
        arrived_at="" if arrived is None else format_timestamp(arrived),
        reason=str(error.reason),
        detail=error.detail,
        data=data,
        data_bytes=len(data),
        data_truncated=False,
        stream=stream,
        application=application,
        log_event=None if in_batch else part,
        batch_event=part if in_batch else None,
    )


def pack_batches(
    items: Iterable[T],
    entries: int = BATCH_ENTRIES,
    max_bytes: int = MAX_MESSAGE_BYTES,
    size: Callable[[Any], int] = len,
) -> list[list[T]]:
    """Groups for one batch call each: at most `entries` items and `max_bytes` (by `size`) per call.

    SendMessageBatch here (10 messages, 256 KiB); PutRecords in `metering dlq redrive` (500, 5 MiB).
    """
    batches: list[list[T]] = []
    total = 0
    for item in items:
        item_size = size(item)
        if not batches or len(batches[-1]) == entries or total + item_size > max_bytes:
            batches.append([])
            total = 0
        batches[-1].append(item)
        total += item_size
    return batches


def queue_url(client: SQSClient, name: str) -> str:
    """The queue's URL; a missing queue is a configuration error (it is made by `metering provision`)."""
    with translated(f"finding the dead-letter queue DLQ_NAME={name!r} (made by `metering provision`)"):
        return client.get_queue_url(QueueName=name)["QueueUrl"]


class _Refused(Exception):
    """Some entries of a SendMessageBatch were refused for the moment; retried on their own."""


class SqsDeadLetters:
    """The processor's `DeadLetters`: buffers messages, `flush` writes them with SendMessageBatch."""

    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        *,
        stream: str,
        application: str,
        log: Any,
        retry_for: float = 60.0,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._stream = stream
        self._application = application
        self._log = log
        self._pending: list[bytes] = []
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dlq-flush")
        # The same bounded ride-out as a flush's (WRITE_RETRY_SECONDS): past it the child exits.
        self._outage = Retry(
            (SinkUnavailable,), deadline=retry_for, base=1.0, sleep=sleep, monotonic=monotonic
        )
        self._refusals = Retry(
            (_Refused,), attempts=_SEND_ATTEMPTS, base=0.2, sleep=sleep, monotonic=monotonic
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(
        self, shard_id: str, record: Any, error: InvalidEvent, log_event: LogEvent | None = None
    ) -> None:
        letter = dead_letter(
            shard_id, record, error, stream=self._stream, application=self._application, log_event=log_event
        )
        self._pending.append(letter.to_message())
        # No data in logs: it may hold personal data. The queue has it.
        self._log.warning(
            "record_dead_lettered",
            shard=shard_id,
            sequence=letter.sequence_number,
            sub_sequence=letter.sub_sequence_number,
            log_event=letter.log_event,
            batch_event=letter.batch_event,
            reason=letter.reason,
            detail=letter.detail[:300],
            bytes=letter.data_bytes,
        )

    def flush(self) -> None:
        """Write every buffered message; past the ride-out, `SinkUnavailable` (the buffer is kept)."""
        if self._pending:
            self._outage.call(self._flush_once, on_retry=self._retrying)
            self._pending.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _retrying(self, attempt: int, error: BaseException) -> None:
        self._log.warning("dead_letter_retry", attempt=attempt, error=str(error)[:300])

    def _flush_once(self) -> None:
        futures = [self._pool.submit(self._send_batch, batch) for batch in pack_batches(self._pending)]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        lasting = [error for error in errors if not isinstance(error, SinkUnavailable)]
        if lasting:
            raise lasting[0]  # a missing queue or permission, a refused message: not worth riding out
        if errors:
            raise SinkUnavailable(f"{len(errors)} of {len(futures)} dead-letter batches failed: {errors[0]}")

    def _send_batch(self, bodies: list[bytes]) -> None:
        """One SendMessageBatch; entries refused for the moment are sent again, a few times."""
        entries = [{"Id": str(i), "MessageBody": body.decode()} for i, body in enumerate(bodies)]

        def send() -> None:
            nonlocal entries
            with translated("SendMessageBatch"):
                reply = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)  # type: ignore[arg-type]
            failed = reply.get("Failed", [])
            permanent = [f for f in failed if f.get("SenderFault")]
            if permanent:
                raise Misconfigured(f"SendMessageBatch refused a message: {permanent[0].get('Code')}")
            refused = {f["Id"] for f in failed}
            entries = [entry for entry in entries if entry["Id"] in refused]
            if entries:
                raise _Refused(f"{len(entries)} messages refused for the moment")

        try:
            self._refusals.call(send)
        except _Refused as exc:
            raise SinkUnavailable(f"SendMessageBatch: {exc} after {_SEND_ATTEMPTS} tries") from exc


def _index(value: Any) -> int | None:
    return None if value is None else int(value)


def _safe(text: str) -> str:
    return _UNSAFE.sub("\ufffd", text)
