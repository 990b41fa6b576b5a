"""Fire-and-forget emission of usage events to Kinesis, packed into usage batches (`contract.batch`).

`emit` only encodes and enqueues (microseconds); one daemon thread packs the events into one open
batch per shard and sends batches with `PutRecords`. Nothing here raises into the handler: a full
queue drops the event, a failed call drops its batches, and both are counted and logged. Records
Kinesis refuses for the moment (a shard over its write quota, an internal failure) are put again by
the sender thread, off the request path, with full-jitter backoff for at most `retry_seconds`;
those still refused then are counted as failed.

Why batches: Kinesis takes 1,000 records/s and 1 MiB/s per shard, and one record per event caps two
shards near 2,000 events/s. A batch closes when it holds `batch_events` events (or would pass
`MAX_BATCH_BYTES`), or when its first event is `linger_s` old, so a shard receives at most
(its events/s) / `batch_events` + (containers) / `linger_s` records a second, ~100 bytes an event.

Which shard: the events of one user keep one shard, as one record per event did, so a flush range
holds all of a user's events and writes each of its items once. The sender reads the stream's open
shards (`ListShards`, once per container), puts each event in the batch of the shard its partition
key hashes to, and sends the batch under its first event's partition key, which Kinesis hashes to
that same shard. After a reshard the map is stale: Kinesis answers with another shard than expected,
and the map is read again (at most every `MAP_REFRESH_SECONDS`). Meanwhile, or without the map (the
call refused), batches mix shards' events: counts stay exact (any shard may write any item, see
consumer/EXACTLY_ONCE.md), only more item writes are made.

Lambda freeze: the container is frozen as soon as the handler returns, with this thread mid-flight.
What it holds then is bounded: at most `max_queue` queued events, one open batch per shard
(`batch_events` events at most) and one call in flight (500 records at most). It is sent as soon
as the next invocation thaws the container (a batch older than `linger_s` goes at once); a call
caught mid-flight may time out on thaw and is counted as failed (the records usually reached
Kinesis already). Only a container shut down while holding events loses them: at most its open
batches, the events of its last `linger_s` seconds.
`flush(timeout)` bounds a wait for everything held to be sent, for callers that prefer completeness
to latency (it sends the open batches at once).
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import hashlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError

from authorizer.events import encode_event, partition_key
from contract.aws import aws_error_code
from contract.batch import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, document_bytes, encode_batch
from contract.events import UsageEventV1
from contract.retry import Retry

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

MAX_CALL_RECORDS = 500  # PutRecords limit
MAX_CALL_BYTES = 4 * 1024 * 1024  # below the 5 MiB PutRecords limit
BATCH_EVENTS = 25  # ~100 bytes an event compressed; bounds what a reclaimed container loses
LINGER_SECONDS = 1.0  # a busy shard's batch fills first; this bounds the records of quiet containers
MAP_REFRESH_SECONDS = 10.0  # at most this often after Kinesis placed a batch on an unexpected shard
MAP_RETRY_SECONDS = 60.0  # after ListShards failed (say, not permitted): mixed batches meanwhile

logger = logging.getLogger(__name__)


# Per-record (and whole-call) errors that pass with time: put those records again.
RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "KMSThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


@dataclass(frozen=True, slots=True)
class ProducerStats:
    sent: int  # events; a batch record counts its events
    failed: int  # refused by Kinesis, or lost with a failed call, after any retries
    dropped: int  # the queue was full
    pending: int  # queued or in an open batch
    retried: int = 0  # events put again after Kinesis refused their record for the moment
    records: int = 0  # Kinesis records sent (batches)


class _Refused(Exception):
    """Kinesis refused records for the moment; they are put again."""


class _Signal(enum.Enum):
    WAKE = "wake"  # `flush` wants the open batches sent now
    STOP = "stop"  # `close`: send everything, then end the thread


@dataclass(frozen=True, slots=True)
class _Entry:
    data: bytes
    partition_key: str


@dataclass(slots=True)
class _Batch:
    """Events bound for one shard (None: unknown), in emission order."""

    shard: str | None
    opened: float
    entries: list[_Entry] = field(default_factory=list)
    event_bytes: int = 0

    def fits(self, entry: _Entry) -> bool:
        size = document_bytes(self.event_bytes + len(entry.data), len(self.entries) + 1)
        return len(self.entries) < MAX_BATCH_EVENTS and size <= MAX_BATCH_BYTES

    def add(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.event_bytes += len(entry.data)


@dataclass(frozen=True, slots=True)
class _Record:
    """A batch as one Kinesis record, with what its answer is checked against."""

    data: bytes
    partition_key: str
    events: int
    shard: str | None


@dataclass(frozen=True, slots=True)
class ShardMap:
    """The stream's open shards by the start of their hash-key ranges (Kinesis hashes partition keys
    with MD5, as a 128-bit number)."""

    starts: tuple[int, ...]
    shard_ids: tuple[str, ...]

    def shard_of(self, key: str) -> str:
        hashed = int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest())
        return self.shard_ids[bisect.bisect_right(self.starts, hashed) - 1]

    @classmethod
    def read(cls, client: KinesisClient, stream_name: str) -> ShardMap:
        ranges: list[tuple[int, str]] = []
        reply = client.list_shards(StreamName=stream_name)
        while True:
            ranges += [
                (int(shard["HashKeyRange"]["StartingHashKey"]), shard["ShardId"])
                for shard in reply["Shards"]
                if "EndingSequenceNumber" not in shard["SequenceNumberRange"]  # open shards only
            ]
            token = reply.get("NextToken")
            if not token:
                break
            reply = client.list_shards(NextToken=token)
        if not ranges:
            raise ValueError(f"stream {stream_name} has no open shard")
        ranges.sort()
        return cls(tuple(start for start, _ in ranges), tuple(shard for _, shard in ranges))


class Producer(Protocol):
    def emit(self, event: UsageEventV1) -> None: ...

    def flush(self, timeout_s: float) -> bool: ...

    def stats(self) -> ProducerStats: ...

    def close(self, timeout_s: float) -> None: ...


class NullProducer:
    """Analytics disabled: no client, no thread, nothing counted."""

    def emit(self, event: UsageEventV1) -> None:
        return None

    def flush(self, timeout_s: float) -> bool:
        return True

    def stats(self) -> ProducerStats:
        return ProducerStats(sent=0, failed=0, dropped=0, pending=0)

    def close(self, timeout_s: float) -> None:
        return None


class KinesisProducer:
    def __init__(
        self,
        client: KinesisClient,
        stream_name: str,
        max_queue: int = 10_000,
        *,
        linger_s: float = LINGER_SECONDS,
        batch_events: int = BATCH_EVENTS,
        retry_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_events must be 1 to {MAX_BATCH_EVENTS}")
        self._client = client
        self._stream_name = stream_name
        self._linger_s = linger_s
        self._batch_events = batch_events
        self._monotonic = monotonic
        self._flushing = threading.Event()
        self._queue: queue.Queue[_Entry | _Signal] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._retry = None
        if retry_seconds:
            self._retry = Retry(
                (_Refused,), deadline=retry_seconds, base=0.05, cap=1.0, sleep=sleep, monotonic=monotonic
            )
        # The sender thread's own state:
        self._open: dict[str | None, _Batch] = {}
        self._closed: list[_Batch] = []
        self._map: ShardMap | None = None
        self._map_read_at = -math.inf
        self._map_due_at = -math.inf
        # Counters: each is written by one thread only (`dropped` by emitters, the rest by the sender).
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._retried = 0
        self._records = 0

    def emit(self, event: UsageEventV1) -> None:
        entry = _Entry(encode_event(event), partition_key(event))
        self._ensure_thread()
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._dropped += 1
            if self._dropped % 1000 == 1:
                logger.warning("usage event queue full: dropped=%d", self._dropped)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every event held was sent or failed; False if the deadline came first."""
        deadline = time.monotonic() + timeout_s
        self._flushing.set()  # stop lingering: send the open batches now
        try:
            with self._queue.all_tasks_done:
                if not self._queue.unfinished_tasks:
                    return True
            with contextlib.suppress(queue.Full):  # a full queue wakes the sender anyway
                self._queue.put_nowait(_Signal.WAKE)
            with self._queue.all_tasks_done:
                while self._queue.unfinished_tasks:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._queue.all_tasks_done.wait(remaining)
            return True
        finally:
            self._flushing.clear()

    def stats(self) -> ProducerStats:
        return ProducerStats(
            sent=self._sent,
            failed=self._failed,
            dropped=self._dropped,
            pending=self._queue.unfinished_tasks,
            retried=self._retried,
            records=self._records,
        )

    def close(self, timeout_s: float) -> None:
        """Send what is held, then stop the sender; for tests and drivers, Lambda never calls it."""
        if self._thread is None:
            return
        try:
            self._queue.put(_Signal.STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="usage-event-sender", daemon=True)
            self._thread.start()

    # -- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            stop = self._collect()
            due = self._due(everything=stop or self._flushing.is_set())
            try:
                if due:
                    self._send(due)
            finally:  # whatever happened, these are done: `flush` must not wait on them
                for batch in due:
                    for _ in batch.entries:
                        self._queue.task_done()

    def _collect(self) -> bool:
        """Move queued events into open batches: wait for one (or until a batch is due), then take
        what else is queued without waiting. True once `close` asked to stop."""
        try:
            items = [self._queue.get(timeout=self._wait_s())]
        except queue.Empty:
            return False
        # At most one call's worth: a busy sender fills its calls, and a busy queue cannot hold back
        # the batches due.
        while len(items) < MAX_CALL_RECORDS * self._batch_events:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stop = False
        for item in items:
            if isinstance(item, _Entry):
                self._add(item)
            else:
                stop = stop or item is _Signal.STOP
                self._queue.task_done()
        return stop

    def _wait_s(self) -> float | None:
        """How long the sender may wait for an event: until the oldest open batch is due."""
        if not self._open:
            return None
        if self._flushing.is_set():
            return 0.0
        oldest = min(batch.opened for batch in self._open.values())
        return max(0.0, oldest + self._linger_s - self._monotonic())

    def _add(self, entry: _Entry) -> None:
        shard = self._shard_of(entry.partition_key)
        batch = self._open.get(shard)
        if batch is not None and not batch.fits(entry):
            self._closed.append(self._open.pop(shard))
            batch = None
        if batch is None:
            batch = self._open[shard] = _Batch(shard, self._monotonic())
        batch.add(entry)
        if len(batch.entries) >= self._batch_events:
            self._closed.append(self._open.pop(shard))

    def _due(self, *, everything: bool) -> list[_Batch]:
        """The batches to send now: the full ones, those open for `linger_s`, or all of them."""
        due, self._closed = self._closed, []
        now = self._monotonic()
        for shard, batch in list(self._open.items()):
            if everything or now - batch.opened >= self._linger_s:
                due.append(self._open.pop(shard))
        return due

    def _shard_of(self, key: str) -> str | None:
        if self._monotonic() >= self._map_due_at:
            self._read_map()
        return None if self._map is None else self._map.shard_of(key)

    def _read_map(self) -> None:
        now = self._monotonic()
        self._map_read_at, self._map_due_at = now, math.inf
        try:
            self._map = ShardMap.read(self._client, self._stream_name)
        except Exception as exc:  # without the map, batches mix shards: still counted exactly
            self._map, self._map_due_at = None, now + MAP_RETRY_SECONDS
            logger.warning("stream's shards not read, batches mix shards: error=%s", _describe(exc))

    def _map_stale(self) -> None:
        """Kinesis placed a batch on another shard than the map says: the stream was resharded."""
        if self._map_due_at == math.inf:
            self._map_due_at = self._map_read_at + MAP_REFRESH_SECONDS

    def _send(self, batches: list[_Batch]) -> None:
        records: list[_Record] = []
        for batch in batches:
            try:
                data = encode_batch([entry.data for entry in batch.entries])
            except Exception as exc:  # a bug of ours costs this batch, never the sender thread
                self._failed += len(batch.entries)
                logger.warning("usage batch not encoded: events=%d error=%s", len(batch.entries), exc)
                continue
            records.append(_Record(data, batch.entries[0].partition_key, len(batch.entries), batch.shard))
        for call in _calls(records):
            self._send_call(call)

    def _send_call(self, records: list[_Record]) -> None:
        pending = records

        def put() -> None:
            nonlocal pending
            pending = self._put(pending)
            if pending:
                raise _Refused(f"{len(pending)} records refused for the moment")

        def retrying(_attempt: int, _error: BaseException) -> None:
            self._retried += _events(pending)

        try:
            if self._retry is None:
                put()
            else:
                self._retry.call(put, on_retry=retrying)
        except _Refused:
            self._failed += _events(pending)
            logger.warning("usage events refused by Kinesis after retries: events=%d", _events(pending))
        except Exception as exc:  # any other failure costs these records, never the sender thread
            self._failed += _events(pending)
            logger.warning("usage events not sent: events=%d error=%s", _events(pending), _describe(exc))

    def _put(self, records: list[_Record]) -> list[_Record]:
        """One PutRecords; the records refused for the moment (to be put again)."""
        entries: list[PutRecordsRequestEntryTypeDef] = [
            {"Data": record.data, "PartitionKey": record.partition_key} for record in records
        ]
        try:
            response = self._client.put_records(StreamName=self._stream_name, Records=entries)
        except ClientError as exc:
            if aws_error_code(exc) in RETRYABLE:
                return records
            raise
        refused: list[_Record] = []
        for record, result in zip(records, response["Records"], strict=True):
            code = result.get("ErrorCode")
            if code is None:
                self._sent += record.events
                self._records += 1
                if record.shard is not None and result.get("ShardId") != record.shard:
                    self._map_stale()
            elif code in RETRYABLE:
                refused.append(record)
            else:
                self._failed += record.events
        return refused


def _calls(records: list[_Record]) -> list[list[_Record]]:
    """Records grouped for one PutRecords each (500 records, 5 MiB)."""
    calls: list[list[_Record]] = []
    size = 0
    for record in records:
        record_size = len(record.data) + len(record.partition_key)
        if not calls or len(calls[-1]) == MAX_CALL_RECORDS or size + record_size > MAX_CALL_BYTES:
            calls.append([])
            size = 0
        calls[-1].append(record)
        size += record_size
    return calls


def _events(records: list[_Record]) -> int:
    return sum(record.events for record in records)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return aws_error_code(exc) or "ClientError"
    return type(exc).__name__
