"""The KCL record processor: decode, add, flush when due, then checkpoint.

One instance runs per shard, in its own child process of the MultiLangDaemon. amazon_kclpy
swallows exceptions from these methods and still reports success, which would acknowledge records
we never counted. So every action runs under `_guarded`: an unexpected error exits the child,
the daemon stops, and the records are replayed from the last checkpoint, exactly
(consumer/EXACTLY_ONCE.md).

A replay (`metering replay`) injects two things: `window`, the time window whose events it counts
(the others advance the shard uncounted), and `progress`, told once the shard's records are
durably counted and checkpointed up to the stream's tip (an empty poll with millisBehindLatest == 0),
or at shard end.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase
from prometheus_client import CollectorRegistry, Histogram

from consumer.cloudwatch import NoPublisher, Publisher
from consumer.core.access_logs import ResponseEvent, decode_log_record, is_gzip
from consumer.core.batch import Member, decode_batch
from consumer.core.events import MAX_EVENT_AGE, InvalidEvent, Reason, UsageEvent, decode_event, utc_now
from consumer.core.flush import Batch, ItemResult, Position, ShardAccumulator, position_key
from consumer.core.measures import Sample, flush_samples
from consumer.core.routes import Routes
from consumer.core.window import CountingWindow
from consumer.errors import SinkUnavailable, Superseded
from consumer.faults import FaultPoints
from consumer.metrics import ProcessorMetrics
from consumer.sinks.base import CounterSink
from contract.batch import is_batch
from contract.retry import Retry

# The lease moved or the worker is shutting down: checkpointing is impossible, not an error of ours.
_LEASE_GONE = {"ShutdownException", "InvalidStateException"}
RESPONSE = "RESPONSE"  # what the events metric calls an access log's response
_CHECKPOINT_ATTEMPTS = 5
_T = TypeVar("_T")


class _LeaseGone(Exception):
    """The checkpoint was refused because the lease moved: stop, do not retry."""


class Checkpointer(Protocol):
    def checkpoint(
        self, sequence_number: str | None = None, sub_sequence_number: int | None = None
    ) -> None: ...


class DeadLetters(Protocol):
    def send(
        self, shard_id: str, record: Any, error: InvalidEvent, log_event: tuple[int, bytes] | None
    ) -> None:
        """Take a record that cannot be counted, or one part of it: a log event, or an event of a usage
        batch, with its index (it may be buffered until `flush`)."""
        ...

    def flush(self) -> None:
        """Make every record taken so far durable; called before any checkpoint passes them."""
        ...


class LoggedDeadLetters:
    """Logs records that cannot be counted, without their data (it may hold personal data)."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def send(
        self, shard_id: str, record: Any, error: InvalidEvent, log_event: tuple[int, bytes] | None
    ) -> None:
        self._log.warning(
            "record_rejected",
            shard=shard_id,
            sequence=record.sequence_number,
            log_event=None if log_event is None else log_event[0],
            reason=str(error.reason),
            detail=error.detail[:300],
        )

    def flush(self) -> None:
        pass


class ShardProgress(Protocol):
    def caught_up(self, shard_id: str) -> None:
        """Every record up to the tip, as of a poll, is counted and checkpointed."""
        ...

    def ended(self, shard_id: str) -> None:
        """The shard is closed and every record of it is counted and checkpointed."""
        ...


class Alerts(Protocol):
    def observe(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Open or extend the alert episodes the items of a durable flush breach."""
        ...

    def sweep(self) -> None:
        """Resolve episodes whose windows passed; send notifications a crash left unsent."""
        ...


class UsageRecordProcessor(RecordProcessorBase):  # type: ignore[misc]
    def __init__(
        self,
        sink: CounterSink,
        dead_letters: DeadLetters,
        log: Any,
        *,
        flush_interval: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utc_now,
        faults: FaultPoints | None = None,
        window: CountingWindow | None = None,
        progress: ShardProgress | None = None,
        metrics: ProcessorMetrics | None = None,
        cloudwatch: Publisher | None = None,
        alerts: Alerts | None = None,
        alert_sweep_interval: float = 10.0,
        routes: Routes | None = None,
    ) -> None:
        self._faults = faults or FaultPoints()
        self._metrics = metrics or ProcessorMetrics(CollectorRegistry())
        self._cloudwatch = cloudwatch or NoPublisher()
        self._alerts = alerts
        self._routes = routes or Routes()
        self._alert_sweep_interval = alert_sweep_interval
        self._last_sweep = monotonic()
        self._unsent: Counter[str] = Counter()  # dead letters taken since the last DLQ flush, by reason
        self._unsent_lines = 0  # of which access-log lines (`_reject` with a log event)
        self._sink = sink
        self._dead_letters = dead_letters
        self._log = log
        self._flush_interval = flush_interval
        self._monotonic = monotonic
        # The daemon's lease table is DynamoDB too: ride out a short hiccup, then let the child exit.
        self._checkpoint_retry = Retry(
            (CheckpointError,), attempts=_CHECKPOINT_ATTEMPTS, base=0.4, sleep=sleep
        )
        self._now = now
        self._window = window
        self._progress = progress
        self._reported_tip = False
        self._shard_id = ""
        self._accumulator: ShardAccumulator | None = None
        self._unflushed_since: float | None = None  # wall clock: when the oldest unflushed record came
        self._last_flush = monotonic()

    def initialize(self, initialize_input: Any) -> None:
        with self._guarded("initialize"):
            self._shard_id = initialize_input.shard_id
            self._log = self._log.bind(shard=self._shard_id)
            checkpoint = _checkpoint_key(
                initialize_input.sequence_number, initialize_input.sub_sequence_number
            )
            unfinished = self._sink.claim(self._shard_id)
            self._accumulator = ShardAccumulator.resume(self._shard_id, checkpoint, unfinished, self._routes)
            self._last_flush = self._monotonic()
            self._metrics.leases_held.labels(self._shard_id).set(1)
            self._metrics.unflushed_since.labels(self._shard_id).set(0)
            self._metrics.last_poll.labels(self._shard_id).set(self._now().timestamp())  # its clock starts
            self._log.info(
                "shard_initialized", checkpoint=checkpoint, replay_cuts=self._accumulator.cut_points
            )

    def process_records(self, process_records_input: Any) -> None:
        with self._guarded("process_records"):
            accumulator = self._accumulator
            if accumulator is None:
                return  # lease lost or claimed by another processor: the new owner replays these
            now = self._now()
            self._read(process_records_input, now)
            counted: Counter[str] = Counter()  # metrics once per batch: they are IPC-backed
            redelivered: list[str] = []
            for record in process_records_input.records:
                key = position_key(record.sequence_number, int(record.sub_sequence_number or 0))
                if not accumulator.is_new(key):
                    redelivered.append(record.sequence_number)
                    continue
                self._add(accumulator, record, key, now, counted)
                self._faults.hit("record-added")
            for event_type, count in counted.items():
                self._metrics.events.labels(event_type).inc(count)
            if redelivered:
                self._report_redelivered(redelivered)
            # Only an empty poll proves the tip was reached: a poll cut short by maxRecords still
            # says 0 when the records left arrived within the same millisecond.
            empty_at_tip = (
                process_records_input.millis_behind_latest == 0 and not process_records_input.records
            )
            if empty_at_tip:
                accumulator.caught_up()
            at_tip = self._progress is not None and not self._reported_tip and empty_at_tip
            if at_tip or self._monotonic() - self._last_flush >= self._flush_interval:
                accumulator.seal()
                self._last_flush = self._monotonic()
            self._flush_sealed(process_records_input.checkpointer)
            if at_tip and self._progress is not None and self._accumulator is not None:
                self._progress.caught_up(self._shard_id)
                self._reported_tip = True
            self._report_pending()
            self._sweep_alerts()

    def lease_lost(self, lease_lost_input: Any) -> None:
        with self._guarded("lease_lost"):
            # No checkpointer: whoever takes the lease replays from our last checkpoint.
            pending = self._accumulator.pending_records if self._accumulator else 0
            self._log.warning("lease_lost", dropped_unflushed_records=pending)
            self._let_go()

    def shard_ended(self, shard_ended_input: Any) -> None:
        with self._guarded("shard_ended"):
            self._flush_all(shard_ended_input.checkpointer, at_end=True)
            if self._accumulator is None:  # lost or superseded, maybe just now: the new owner ends it
                self._log.warning("shard_end_not_owned")
                return
            # At shard end the checkpoint takes no position: it marks the shard finished.
            if self._checkpoint(shard_ended_input.checkpointer, None) and self._progress is not None:
                self._progress.ended(self._shard_id)
            self._let_go()
            self._log.info("shard_ended")

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        with self._guarded("shutdown_requested"):
            self._flush_all(shutdown_requested_input.checkpointer)
            self._let_go()
            self._log.info("shutdown_flushed")

    def _add(
        self, accumulator: ShardAccumulator, record: Any, key: str, now: datetime, counted: Counter[str]
    ) -> None:
        """Add one record at its position, whatever it holds; what it counts goes into `counted`."""
        data = record.binary_data
        if is_gzip(data):  # API Gateway's access logs, through a CloudWatch Logs subscription
            responses = self._responses(record, data, key, now)
            counted[RESPONSE] += len(responses)
            accumulator.add(key, responses=responses)
        elif is_batch(data):  # many usage events in one record (contract.batch)
            accumulator.add(key, events=self._members(record, data, key, now, counted))
        else:
            event = self._countable(record, data, now)
            if event is not None and not self._counts_here(event.redrive_origin, key, event.timestamp):
                event = None
            if event is not None:
                counted[event.event_type.value] += 1
            accumulator.add(key, event, data)

    def _counts_here(self, origin: str | None, key: str, at: datetime) -> bool:
        """A re-driven event counts only in the one copy that owns its origin (EXACTLY_ONCE.md)."""
        if origin is None:
            return True
        expires_at = int((at + MAX_EVENT_AGE + timedelta(days=1)).timestamp())
        if self._sink.claim_origin(origin, f"{self._shard_id}/{key}", expires_at):
            return True
        self._metrics.redrive_copies.inc()
        self._log.info("redriven_copy_ignored", origin=origin, position=key)
        return False

    def _responses(self, record: Any, data: bytes, key: str, now: datetime) -> list[ResponseEvent]:
        """The responses of an access-log record counted here; bad ones go to the dead letters."""
        logs = self._decoded(record, decode_log_record, data, now)
        if logs is None:
            return []
        responses = []
        for (index, decoded), raw in zip(logs.events, logs.raw_events, strict=True):
            if isinstance(decoded, InvalidEvent):
                self._reject(record, decoded, (index, raw))
            elif self._window is None or decoded.timestamp in self._window:
                responses.append(decoded)
        if responses and not self._counts_here(logs.redrive_origin, key, responses[0].timestamp):
            return []
        return responses

    def _members(
        self, record: Any, data: bytes, key: str, now: datetime, counted: Counter[str]
    ) -> list[Member]:
        """The events of a usage batch counted here; a bad batch goes to the dead letters whole, a bad
        event of a good one alone, with its index (`decode_batch`)."""
        batch = self._decoded(record, decode_batch, data, now)
        if batch is None:
            return []
        for index, invalid, raw in batch.rejected:
            self._reject(record, invalid, (index, raw))
        members = batch.events
        if self._window is not None or any(event.redrive_origin is not None for _, event, _ in members):
            members = [member for member in members if self._member_counts(member, key)]
        counted.update(event.event_type for _, event, _ in members)  # StrEnums: keys as their values
        return members

    def _member_counts(self, member: Member, key: str) -> bool:
        """Whether an event of a batch counts here: in the window, and its own copy of its origin."""
        index, event, _ = member
        if self._window is not None and event.timestamp not in self._window:
            return False
        return self._counts_here(event.redrive_origin, f"{key}/{index}", event.timestamp)

    def _report_redelivered(self, sequences: list[str]) -> None:
        """Records the shard had already passed: ignored (never counted again), counted and logged."""
        self._metrics.redelivered.labels(self._shard_id).inc(len(sequences))
        self._log.warning(
            "records_redelivered_ignored", records=len(sequences), first=sequences[0], last=sequences[-1]
        )

    def _countable(self, record: Any, data: bytes, now: datetime) -> UsageEvent | None:
        """The record's event if it is valid and counted here; bad records go to the dead letters."""
        event = self._decoded(record, decode_event, data, now)
        if event is None:
            return None
        return event if self._window is None or event.timestamp in self._window else None

    def _decoded(
        self, record: Any, decode: Callable[[bytes, datetime], _T], data: bytes, now: datetime
    ) -> _T | None:
        """`decode` of the record's data, or None with the record dead-lettered whole."""
        # "Too far in the future" is judged against the record's arrival in the stream, not our
        # clock, so that a replay days later makes exactly the same decision as the live run.
        arrived = record.timestamp_millis
        try:
            return decode(data, _arrival(arrived) if arrived else now)
        except InvalidEvent as error:
            self._reject(record, error)
        except Exception as exc:  # a bug of ours must cost this record, never the shard
            self._log.exception("decoder_failed", sequence=record.sequence_number)
            self._reject(record, InvalidEvent(Reason.DECODER_ERROR, type(exc).__name__))
        return None

    def _reject(self, record: Any, error: InvalidEvent, log_event: tuple[int, bytes] | None = None) -> None:
        self._metrics.rejected.labels(error.reason.value).inc()
        if log_event is not None:  # one line of an envelope: not a record we could not count
            self._metrics.access_log_lines_rejected.labels(error.reason.value).inc()
            self._unsent_lines += 1
        if error.reason is Reason.DECODER_ERROR:
            self._metrics.decoder_errors.inc()
        self._dead_letters.send(self._shard_id, record, error, log_event)
        self._unsent[error.reason.value] += 1

    def _flush_all(self, checkpointer: Checkpointer, *, at_end: bool = False) -> None:
        if self._accumulator is not None:
            if at_end:
                self._accumulator.caught_up()
            self._accumulator.seal()
            self._last_flush = self._monotonic()
            self._flush_sealed(checkpointer)

    def _flush_sealed(self, checkpointer: Checkpointer) -> None:
        accumulator = self._require_accumulator()
        sealed = accumulator.take_sealed()
        if sealed:
            self._flush_dead_letters()
        for batch in sealed:
            started = self._monotonic()
            try:
                results = self._sink.write(batch)
            except Superseded:
                self._log.warning("superseded", dropped_unflushed_records=accumulator.pending_records)
                self._let_go()
                break
            except SinkUnavailable:
                self._metrics.flush_failures.inc()
                self._cloudwatch.put([Sample("FlushFailures", 1, self._now())])
                raise
            if not self._checkpoint(checkpointer, batch):
                break
            self._metrics.flush_seconds.observe(self._monotonic() - started)
            self._metrics.checkpoints.labels(self._shard_id).inc()
            self._metrics.last_flush.labels(self._shard_id).set_to_current_time()
            self._observe(batch, results)
            self._log.debug(
                "flushed",
                records=batch.records,
                items=len(batch.aggregate.items),
                seconds=round(self._monotonic() - started, 3),
            )

    def _checkpoint(self, checkpointer: Checkpointer, batch: Batch | None) -> bool:
        """Checkpoint at the batch's end (or the shard's end); False if the lease is gone."""
        position = batch.range.end_position if batch else None

        def checkpoint() -> None:
            try:
                if position is None:
                    checkpointer.checkpoint()
                else:
                    checkpointer.checkpoint(position.sequence, position.sub_sequence)
            except CheckpointError as exc:
                if exc.value in _LEASE_GONE:
                    raise _LeaseGone(exc.value) from exc
                raise

        try:
            self._checkpoint_retry.call(checkpoint)
        except _LeaseGone as gone:
            self._log.warning("checkpoint_refused", error=str(gone))
            self._let_go()
            return False
        return True

    def _read(self, polled: Any, now: datetime) -> None:
        records, behind = len(polled.records), polled.millis_behind_latest
        self._metrics.records.labels(self._shard_id).inc(records)
        self._metrics.millis_behind.labels(self._shard_id).set(behind)
        self._metrics.last_poll.labels(self._shard_id).set(now.timestamp())  # what /healthz ages
        self._cloudwatch.put([Sample("RecordsProcessed", records, now), Sample("IteratorAge", behind, now)])
        if records and self._unflushed_since is None:
            self._unflushed_since = time.time()
            # Told now, not after the flush: a flush that hangs must show (/healthz).
            self._metrics.unflushed_since.labels(self._shard_id).set(self._unflushed_since)

    def _flush_dead_letters(self) -> None:
        """Make the dead letters durable (before any checkpoint passes their records), then count them."""
        self._dead_letters.flush()
        now = self._now()
        for reason, count in self._unsent.items():
            self._metrics.dead_letters_sent.labels(reason).inc(count)
        self._cloudwatch.put(Sample("DeadLetters", n, now, (("Reason", r),)) for r, n in self._unsent.items())
        if self._unsent:  # the two alarms' metrics (ecs/monitoring.yaml): lines apart from the rest
            lines = self._unsent_lines
            uncounted = sum(self._unsent.values()) - lines
            self._cloudwatch.put(
                [Sample("UncountedRecords", uncounted, now), Sample("RejectedAccessLogLines", lines, now)]
            )
        self._unsent.clear()
        self._unsent_lines = 0

    def _observe(self, batch: Batch, results: dict[tuple[str, str], ItemResult]) -> None:
        """What a durable flush tells the metrics and the alerts (all after its checkpoint)."""
        flushed_at = self._now()
        samples = flush_samples(batch, results, flushed_at)
        self._cloudwatch.put(samples)
        for sample in samples:
            if sample.metric == "ProcessingLatency":
                _observe_many(self._metrics.event_lag, sample.value / 1000, sample.count)
        if self._alerts is not None:
            self._alerts.observe({key: result.values for key, result in results.items()})

    def _report_pending(self) -> None:
        """What /healthz judges: since when records wait unflushed (0: none), and how many."""
        pending = self._accumulator.pending_records if self._accumulator is not None else 0
        if not pending:
            self._unflushed_since = None
        self._metrics.pending_records.labels(self._shard_id).set(pending)
        self._metrics.unflushed_since.labels(self._shard_id).set(self._unflushed_since or 0)

    def _sweep_alerts(self) -> None:
        if self._alerts is not None and self._monotonic() - self._last_sweep >= self._alert_sweep_interval:
            self._last_sweep = self._monotonic()
            self._alerts.sweep()

    def _let_go(self) -> None:
        """This processor no longer owns the shard (lease lost or moved, superseded, ended, shut down)."""
        self._accumulator = None
        self._unflushed_since = None
        self._metrics.leases_held.labels(self._shard_id).set(0)
        self._metrics.pending_records.labels(self._shard_id).set(0)
        self._metrics.unflushed_since.labels(self._shard_id).set(0)
        self._metrics.last_poll.labels(self._shard_id).set(0)

    def _require_accumulator(self) -> ShardAccumulator:
        if self._accumulator is None:
            raise RuntimeError("records arrived for a shard this processor no longer owns")
        return self._accumulator

    @contextmanager
    def _guarded(self, action: str) -> Iterator[None]:
        try:
            yield
        except Exception:
            self._log.exception("processor_failed", action=action)
            raise SystemExit(1) from None


def _observe_many(histogram: Histogram, value: float, count: int) -> None:
    """`count` observations of one value, as `count` calls of `observe` would make them, in two
    writes: each is a locked mmap write in multiprocess mode, and one per event was a fifth of the
    processor's time (bench/consumer_throughput.py). prometheus-client has no weighted observe."""
    histogram._sum.inc(value * count)
    histogram._buckets[bisect.bisect_left(histogram._upper_bounds, value)].inc(count)


@lru_cache(maxsize=1024)
def _arrival(millis: int) -> datetime:
    """A record's arrival time; cached, as records of one poll often arrived in the same millisecond."""
    return datetime.fromtimestamp(millis / 1000, UTC)


def _checkpoint_key(sequence: str | None, sub_sequence: int | None) -> str | None:
    """The initial checkpoint as a position key; None for TRIM_HORIZON, LATEST and the like."""
    if sequence is None or not sequence.isdigit():
        return None
    return Position(sequence, int(sub_sequence or 0)).key()
