"""Fire-and-forget emission of usage events to Kinesis.

`emit` only encodes and enqueues (microseconds); one daemon thread sends batches with `PutRecords`,
lingering up to 50 ms after the first event so busy containers make one call per batch, not per event.
Nothing here raises into the handler: a full queue drops the event, a failed call drops its batch,
and both are counted and logged. Records Kinesis refuses for the moment (a shard over its write
quota, an internal failure) are put again by the sender thread, off the request path, with
full-jitter backoff for at most `retry_seconds`; those still refused then are counted as failed.

Lambda freeze: the container is frozen as soon as the handler returns, with this thread mid-flight.
Queued events are simply sent when the next invocation thaws the container; an in-flight call may
time out on thaw and is counted as failed (the records usually reached Kinesis already). Only a
container shut down with events queued loses them: typically the last event of that container.
`flush(timeout)` bounds a wait for the queue to empty, for callers that prefer completeness to latency.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError

from authorizer.events import encode_event, partition_key
from contract.aws import aws_error_code
from contract.events import UsageEventV1
from contract.retry import Retry

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

MAX_BATCH_RECORDS = 500  # PutRecords limit
MAX_BATCH_BYTES = 4 * 1024 * 1024  # below the 5 MiB PutRecords limit

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
    sent: int
    failed: int  # refused by Kinesis, or lost with a failed call, after any retries
    dropped: int  # the queue was full
    pending: int
    retried: int = 0  # records put again after Kinesis refused them for the moment


class _Refused(Exception):
    """Kinesis refused records for the moment; they are put again."""


@dataclass(frozen=True, slots=True)
class _Entry:
    data: bytes
    partition_key: str


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
        linger_s: float = 0.05,
        retry_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._linger_s = linger_s
        self._flushing = threading.Event()
        self._stream_name = stream_name
        self._queue: queue.Queue[_Entry | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._retry = None
        if retry_seconds:
            self._retry = Retry(
                (_Refused,), deadline=retry_seconds, base=0.05, cap=1.0, sleep=sleep, monotonic=monotonic
            )
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._retried = 0

    def emit(self, event: UsageEventV1) -> None:
        entry = _Entry(encode_event(event), partition_key(event))
        self._ensure_thread()
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._dropped += 1  # only this thread writes the counter
            if self._dropped % 1000 == 1:
                logger.warning("usage event queue full: dropped=%d", self._dropped)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued event was sent or failed; False if the deadline came first."""
        deadline = time.monotonic() + timeout_s
        self._flushing.set()  # stop lingering: send what is queued now
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._flushing.clear()
                    return False
                self._queue.all_tasks_done.wait(remaining)
        self._flushing.clear()
        return True

    def stats(self) -> ProducerStats:
        return ProducerStats(
            sent=self._sent,
            failed=self._failed,
            dropped=self._dropped,
            pending=self._queue.unfinished_tasks,
            retried=self._retried,
        )

    def close(self, timeout_s: float) -> None:
        """Stop the sender after what is queued; for tests and drivers, Lambda never calls it."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="usage-event-sender", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            try:
                if batch:
                    self._send(batch)
            finally:  # whatever happened, these are done: `flush` must not wait on them
                for _ in range(len(batch) + stop):
                    self._queue.task_done()
            if stop:
                return

    def _next_batch(self) -> tuple[list[_Entry], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch, size = [first], len(first.data)
        linger_until = time.monotonic() + self._linger_s
        while len(batch) < MAX_BATCH_RECORDS and size < MAX_BATCH_BYTES:
            try:
                entry = self._queue.get(timeout=self._wait_s(linger_until))
            except queue.Empty:
                if self._flushing.is_set() or time.monotonic() >= linger_until:
                    break
                continue
            if entry is None:
                return batch, True
            batch.append(entry)
            size += len(entry.data)
        return batch, False

    def _wait_s(self, linger_until: float) -> float:
        """Poll in short slices while lingering, so a flush is noticed within a few milliseconds."""
        if self._flushing.is_set():
            return 0.0005
        return max(0.0005, min(0.005, linger_until - time.monotonic()))

    def _send(self, batch: list[_Entry]) -> None:
        pending = batch

        def put() -> None:
            nonlocal pending
            pending = self._put(pending)
            if pending:
                raise _Refused(f"{len(pending)} records refused for the moment")

        def retrying(_attempt: int, _error: BaseException) -> None:
            self._retried += len(pending)

        try:
            if self._retry is None:
                put()
            else:
                self._retry.call(put, on_retry=retrying)
        except _Refused:
            self._failed += len(pending)
            logger.warning("usage events refused by Kinesis after retries: records=%d", len(pending))
        except Exception as exc:  # any other failure costs these records, never the sender thread
            self._failed += len(pending)
            logger.warning("usage events not sent: records=%d error=%s", len(pending), _describe(exc))

    def _put(self, entries: list[_Entry]) -> list[_Entry]:
        """One PutRecords; the entries refused for the moment (to be put again)."""
        records: list[PutRecordsRequestEntryTypeDef] = [
            {"Data": entry.data, "PartitionKey": entry.partition_key} for entry in entries
        ]
        try:
            response = self._client.put_records(StreamName=self._stream_name, Records=records)
        except ClientError as exc:
            if aws_error_code(exc) in RETRYABLE:
                return entries
            raise
        refused: list[_Entry] = []
        for entry, result in zip(entries, response["Records"], strict=True):
            code = result.get("ErrorCode")
            if code is None:
                self._sent += 1
            elif code in RETRYABLE:
                refused.append(entry)
            else:
                self._failed += 1
        return refused


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return aws_error_code(exc) or "ClientError"
    return type(exc).__name__
