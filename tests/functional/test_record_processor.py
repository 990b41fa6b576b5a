"""The record processor through the real `KCLProcess`, fed protocol lines from memory."""

from __future__ import annotations

import contextlib
import gzip
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from consumer.core.events import Reason, decode_event
from consumer.core.flush import Batch
from consumer.errors import Superseded
from consumer.metrics import ProcessorMetrics
from consumer.processor import LoggedDeadLetters, UsageRecordProcessor
from consumer.sinks.memory import MemorySink, MemoryStore
from consumer.testing import (
    FakeClock,
    RecordingDeadLetters,
    RecordingPublisher,
    ScriptedDaemon,
    access_log_line,
    chunks,
    event,
    log_envelope,
    subscription_record,
)
from contract import access_logs

SHARD = "shardId-000000000000"
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _processor(
    sink: MemorySink,
    clock: FakeClock | None = None,
    interval: float = 5.0,
    cloudwatch: RecordingPublisher | None = None,
) -> UsageRecordProcessor:
    log = structlog.get_logger("test")
    return UsageRecordProcessor(
        sink,
        LoggedDeadLetters(log),
        log,
        flush_interval=interval,
        monotonic=clock or FakeClock(),
        now=lambda: NOW,
        cloudwatch=cloudwatch,
    )


def _calls(n: int, start: int = 1, email: str = "alice@example.com") -> list[tuple[int, bytes]]:
    return [(seq, orjson.dumps(event(email=email))) for seq in range(start, start + n)]


def test_does_not_flush_or_checkpoint_before_the_interval() -> None:
    """Records within the flush interval stay in memory and nothing is checkpointed."""
    sink = MemorySink()
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(3))
    daemon.run(_processor(sink))
    assert daemon.checkpoints == [] and sink.items == {}


def test_flushes_then_checkpoints_at_the_flushed_end() -> None:
    """Once the interval passed, counts are written, then the checkpoint is the last flushed record."""
    sink, clock = MemorySink(), FakeClock()
    processor = _processor(sink, clock)
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(3))
    daemon.run(processor)
    clock.now = 6.0
    daemon.records(_calls(2, start=4)).run(processor)
    assert daemon.checkpoints == [("5", 0)]
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 5


def test_empty_poll_flushes_a_quiet_shard() -> None:
    """An empty process_records call flushes pending counts once due."""
    sink, clock = MemorySink(), FakeClock()
    processor = _processor(sink, clock)
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(3))
    daemon.run(processor)
    clock.now = 6.0
    daemon.records([]).run(processor)
    assert daemon.checkpoints == [("3", 0)]


def test_frequent_empty_polls_do_not_postpone_the_flush() -> None:
    """Empty polls more often than the interval must not keep resetting the flush timer."""
    sink, clock = MemorySink(), FakeClock()
    processor = _processor(sink, clock)
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(3))
    daemon.run(processor)
    for _ in range(6):
        clock.now += 1.0
        daemon.records([]).run(processor)
    assert daemon.checkpoints == [("3", 0)]


def test_shutdown_requested_flushes_and_checkpoints() -> None:
    """A graceful shutdown writes pending counts and checkpoints them."""
    sink = MemorySink()
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(4)).shutdown_requested()
    daemon.run(_processor(sink))
    assert daemon.checkpoints == [("4", 0)]
    assert sink.items[("GLOBAL", "HOUR#2026-11-24T17")]["calls"] == 4


def test_shard_end_flushes_then_checkpoints_without_position() -> None:
    """At shard end the counts are written before the position-less checkpoint."""
    sink = MemorySink()
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(2)).shard_ended()
    daemon.run(_processor(sink))
    assert daemon.checkpoints == [("2", 0), (None, None)]


def test_lease_lost_drops_pending_without_checkpoint() -> None:
    """After losing the lease nothing is written or checkpointed: the new owner replays."""
    sink = MemorySink()
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(2)).lease_lost()
    daemon.run(_processor(sink))
    assert daemon.checkpoints == [] and sink.items == {}


def test_invalid_records_are_skipped_and_valid_ones_counted() -> None:
    """A bad record never stops the shard and never loses the valid records around it."""
    sink = MemorySink()
    records = [
        (1, orjson.dumps(event())),
        (2, b"{broken"),
        (3, orjson.dumps(event(version=9))),
        (4, orjson.dumps(event())),
    ]
    daemon = ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested()
    daemon.run(_processor(sink))
    assert daemon.checkpoints == [("4", 0)]
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 2


def test_failed_flush_exits_the_child_without_checkpoint() -> None:
    """A sink failure exits the child (the daemon restarts) instead of acknowledging records."""
    sink, cloudwatch = MemorySink(fail_after_items=1), RecordingPublisher()
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(2)).shutdown_requested()
    with pytest.raises(SystemExit):
        daemon.run(_processor(sink, cloudwatch=cloudwatch))
    assert daemon.checkpoints == []
    assert cloudwatch.total("FlushFailures") == 1 and cloudwatch.total("ApiCalls") == 0


def test_refused_checkpoint_stops_without_crashing() -> None:
    """A checkpoint refused because the lease moved is not a crash: the shard just stops."""
    sink = MemorySink()
    daemon = ScriptedDaemon(checkpoint_error="ShutdownException")
    daemon.initialize(SHARD).records(_calls(2)).shutdown_requested().run(_processor(sink))
    assert daemon.statuses == ["initialize", "processRecords", "shutdownRequested"]


class ClaimedElsewhereSink(MemorySink):
    """Another processor claimed the shard since this one did (its lease was taken mid-flush)."""

    def write(self, batch: Batch) -> dict[Any, Any]:
        raise Superseded(f"{batch.range.shard_id} was claimed by another record processor")


def test_superseded_processor_stops_without_writing_checkpointing_or_crashing() -> None:
    """Once superseded, nothing is written or checkpointed, later records and the shard end are the
    new owner's, and the child carries on (a crash would stop the whole daemon)."""
    sink = ClaimedElsewhereSink()
    processor = _processor(sink, interval=0)  # flushes in the first processRecords
    daemon = ScriptedDaemon().initialize(SHARD).records(_calls(3)).records(_calls(2, start=4)).shard_ended()
    daemon.run(processor)
    assert daemon.checkpoints == [] and sink.items == {}
    assert daemon.statuses == ["initialize", "processRecords", "processRecords", "shardEnded"]


def _ground_truth(records: list[tuple[int, bytes]]) -> MemorySink:
    sink = MemorySink()
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(_processor(sink))
    return sink


def _counts(sink: MemorySink) -> dict[tuple[str, str], dict[str, int]]:
    """Every counter of every item (all but the bookkeeping: watermarks, markers, TTLs)."""
    return {
        key: {name: value for name, value in item.items() if isinstance(value, int) and name != "expiresAt"}
        for key, item in sink.items.items()
    }


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.sampled_from(["a@x.io", "b@x.io", "c@x.io", None]), min_size=1, max_size=40),
    first_batches=st.lists(st.integers(1, 7), min_size=1, max_size=10),
    replay_batches=st.lists(st.integers(1, 7), min_size=1, max_size=10),
    crash_after_items=st.integers(0, 12),
)
def test_crash_mid_flush_then_replay_counts_exactly_once(
    users: list[str | None], first_batches: list[int], replay_batches: list[int], crash_after_items: int
) -> None:
    """Whatever the batch boundaries and wherever a flush dies, a replay from the checkpoint is exact."""
    records = [(i + 1, orjson.dumps(event(email=u))) for i, u in enumerate(users)]
    sink, clock = MemorySink(), FakeClock()
    # First run: flush after every batch; one flush dies part-way (a crash mid-flush).
    daemon = ScriptedDaemon().initialize(SHARD)
    for chunk in chunks(records, first_batches):
        daemon.records(chunk)
    sink.fail_after_items = crash_after_items
    with pytest.raises(SystemExit):
        daemon.run(_processor(sink, clock, interval=0.0))
        raise SystemExit  # no crash happened: every flush was small enough
    # Restart from the last checkpoint with different batch boundaries, as the daemon would.
    sink.fail_after_items = None
    checkpoint = daemon.last_checkpoint or "TRIM_HORIZON"
    replay = [r for r in records if checkpoint == "TRIM_HORIZON" or r[0] > int(checkpoint)]
    daemon = ScriptedDaemon().initialize(SHARD, checkpoint)
    for chunk in chunks(replay, replay_batches):
        daemon.records(chunk)
    daemon.shutdown_requested().run(_processor(sink, clock, interval=0.0))
    assert _counts(sink) == _counts(_ground_truth(records))


@settings(max_examples=80, deadline=None)
@given(
    users=st.lists(st.sampled_from(["a@x.io", "b@x.io", "c@x.io", None]), min_size=1, max_size=40),
    runs=st.lists(
        st.tuples(
            st.lists(st.integers(1, 7), min_size=1, max_size=6),  # batch sizes of this run
            st.integers(1, 6),  # batches delivered before the interruption
            st.one_of(st.none(), st.integers(0, 12)),  # a flush dies after N items, or SIGTERM
            st.booleans(),  # polls claim the tip (millisBehindLatest 0), as a poll cut short can
        ),
        min_size=1,
        max_size=4,
    ),
)
@example(users=["a@x.io"] * 20, runs=[([7], 1, 1, False), ([3], 1, None, False)])  # a replay's part
@example(users=["a@x.io", "b@x.io"] * 13, runs=[([20], 1, 1, False), ([10], 2, None, True)])  # 'tip'
def test_interruptions_during_replays_still_count_exactly_once(
    users: list[str | None], runs: list[tuple[list[int], int, int | None, bool]]
) -> None:
    """Crashes and graceful handoffs, one after another and in the middle of replays, stay exact."""
    records = [(i + 1, orjson.dumps(event(email=u))) for i, u in enumerate(users)]
    sink, clock, checkpoint = MemorySink(), FakeClock(), "TRIM_HORIZON"
    cloudwatch = RecordingPublisher()
    for sizes, delivered, crash_after_items, at_tip in runs:
        daemon = ScriptedDaemon().initialize(SHARD, checkpoint)
        remaining = [r for r in records if checkpoint == "TRIM_HORIZON" or r[0] > int(checkpoint)]
        for chunk in chunks(remaining, sizes)[:delivered]:
            daemon.records(chunk, at_tip=at_tip)
        if crash_after_items is None:
            daemon.shutdown_requested()
        sink.fail_after_items = crash_after_items
        with contextlib.suppress(SystemExit):  # died mid-flush: the daemon restarts the child
            daemon.run(_processor(sink, clock, interval=0.0, cloudwatch=cloudwatch))
        checkpoint = daemon.last_checkpoint or checkpoint
    sink.fail_after_items = None
    remaining = [r for r in records if checkpoint == "TRIM_HORIZON" or r[0] > int(checkpoint)]
    daemon = ScriptedDaemon().initialize(SHARD, checkpoint).records(remaining, at_tip=True)
    daemon.shutdown_requested().run(_processor(sink, clock, interval=0.0, cloudwatch=cloudwatch))
    assert _counts(sink) == _counts(_ground_truth(records))
    # CloudWatch's figures: a crash may cost some (published by the flush that applied them, only
    # if it got to its GLOBAL items), never doubles them; without a crash they are exact.
    calls = len(records)  # every event is an API_CALL
    assert cloudwatch.total("ApiCalls") <= calls
    if all(crash is None for _, _, crash, _ in runs):
        assert cloudwatch.total("ApiCalls") == calls


def test_metrics_report_records_events_rejections_and_flushes() -> None:
    """The processor's metrics count records, events by type, rejections by reason, and flushes."""
    registry = CollectorRegistry()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(
        MemorySink(),
        LoggedDeadLetters(log),
        log,
        flush_interval=5.0,
        now=lambda: NOW,
        metrics=ProcessorMetrics(registry),
    )
    records = [*_calls(3), (4, b"nope")]
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(processor)
    sample = registry.get_sample_value
    assert sample("metering_records_total", {"shard": SHARD}) == 4
    assert sample("metering_events_counted_total", {"type": "API_CALL"}) == 3
    assert sample("metering_records_rejected_total", {"reason": "NOT_JSON"}) == 1
    assert sample("metering_checkpoints_total", {"shard": SHARD}) == 1
    assert sample("metering_flush_seconds_count") == 1


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.sampled_from(["a@x.io", "b@x.io", None]), min_size=1, max_size=30),
    polls=st.lists(st.tuples(st.integers(0, 12), st.integers(1, 8)), min_size=1, max_size=12),
    interval=st.sampled_from([0.0, 5.0]),
)
@example(users=["a@x.io"] * 6, polls=[(0, 3), (3, 3)], interval=0.0)  # a poll repeated whole
def test_redelivered_records_are_ignored_and_counted_in_a_metric(
    users: list[str | None], polls: list[tuple[int, int]], interval: float
) -> None:
    """Records delivered again at or below a position already taken are never counted twice."""
    records = [(i + 1, orjson.dumps(event(email=u))) for i, u in enumerate(users)]
    sink, registry = MemorySink(), CollectorRegistry()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(
        sink,
        LoggedDeadLetters(log),
        log,
        flush_interval=interval,
        monotonic=FakeClock(),
        now=lambda: NOW,
        metrics=ProcessorMetrics(registry),
    )
    daemon, taken, deliveries = ScriptedDaemon().initialize(SHARD), 0, 0
    for rewind, size in polls:  # each poll goes back `rewind` records, as a faulty source might
        start = max(0, taken - rewind)
        poll = records[start : start + size]
        daemon.records(poll)
        taken, deliveries = max(taken, start + len(poll)), deliveries + len(poll)
    daemon.records(records[taken:]).shutdown_requested().run(processor)
    deliveries += len(records) - taken
    assert _counts(sink) == _counts(_ground_truth(records))
    redelivered = registry.get_sample_value("metering_records_redelivered_total", {"shard": SHARD}) or 0
    assert redelivered == deliveries - len(records)


def test_an_unexpected_decoder_error_dead_letters_the_record_and_the_shard_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug of ours in decoding costs that record (DECODER_ERROR, the exception type), not the shard."""

    def decode(data: bytes, now: datetime) -> Any:
        if b"trigger" in data:
            raise ZeroDivisionError("quoting trigger@example.com")
        return decode_event(data, now)

    monkeypatch.setattr("consumer.processor.decode_event", decode)
    sink, dead_letters, registry = MemorySink(), RecordingDeadLetters(), CollectorRegistry()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(
        sink, dead_letters, log, flush_interval=5.0, now=lambda: NOW, metrics=ProcessorMetrics(registry)
    )
    records = [*_calls(2), (3, orjson.dumps(event(userAgent="trigger"))), *_calls(2, start=4)]
    daemon = ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested()
    daemon.run(processor)
    assert daemon.checkpoints == [("5", 0)]
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 4
    [(sequence, _, error)] = dead_letters.sent
    assert (sequence, error.reason, error.detail) == ("3", Reason.DECODER_ERROR, "ZeroDivisionError")
    assert dead_letters.flushed == 1
    assert registry.get_sample_value("metering_records_rejected_total", {"reason": "DECODER_ERROR"}) == 1


def test_a_redriven_origin_counts_once_whatever_its_copies_and_replays() -> None:
    """A re-drive put twice (crash between put and delete) leaves two copies, here in two shards:
    the first to claim the origin counts it, a replay of that copy too, the other copy never."""
    store = MemoryStore()
    redriven = orjson.dumps(event(email="bob@example.com", redriveOrigin="shardId-000000000009/77/0"))
    log = structlog.get_logger("test")

    def run(shard: str, records: list[tuple[int, bytes]], checkpoint: str = "TRIM_HORIZON") -> float:
        registry = CollectorRegistry()
        processor = UsageRecordProcessor(
            MemorySink(store), LoggedDeadLetters(log), log, flush_interval=5.0, now=lambda: NOW,
            metrics=ProcessorMetrics(registry),
        )  # fmt: skip
        ScriptedDaemon().initialize(shard, checkpoint).records(records).shutdown_requested().run(processor)
        return registry.get_sample_value("metering_redrive_copies_ignored_total") or 0.0

    ignored = run(SHARD, [*_calls(2), (3, redriven)])
    ignored += run(SHARD, [(3, redriven)], checkpoint="2")  # a replay of the copy that counts
    ignored += run("shardId-000000000001", [(5, redriven), *_calls(1, start=6)])  # the second copy
    bob = store.items[("USER#bob@example.com", "TOTAL")]
    assert bob["calls"] == 1
    assert store.items[("USER#alice@example.com", "TOTAL")]["calls"] == 3
    assert ignored == 1


def _log_record(
    *lines: dict[str, str] | str, at: datetime = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
) -> bytes:
    messages = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    return subscription_record(log_envelope(*messages))


def test_access_log_records_count_their_responses_and_dead_letter_their_bad_lines() -> None:
    """An envelope's good lines count in their endpoint's items; a bad line goes to the dead letters
    alone; a control message counts nothing; a bomb is dead-lettered whole; usage events still count."""
    sink, dead_letters = MemorySink(), RecordingDeadLetters()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(sink, dead_letters, log, flush_interval=5.0, now=lambda: NOW)
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))
    records = [
        (1, _log_record(access_log_line(), access_log_line(status="503", responseLatency="900"), "not json")),
        (2, subscription_record(log_envelope("CWL CONTROL MESSAGE", message_type="CONTROL_MESSAGE"))),
        (3, bomb),
        (4, orjson.dumps(event())),
        (5, _log_record(access_log_line(httpMethod="POST", integrationLatency="-", status="401"))),
    ]
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(processor)
    get = sink.items[("ENDPOINT#GET /items/{id}", "MINUTE#2026-11-24T17:52")]
    assert (get["responses"], get["s2xx"], get["s5xx"], get["integrations"], get["latencySum"]) == (
        2,
        1,
        1,
        2,
        941,
    )
    post = sink.items[("ENDPOINT#POST /items/{id}", "HOUR#2026-11-24T17")]
    assert (post["responses"], post["s4xx"], post.get("integrations")) == (1, 1, None)
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 1
    assert [(sequence, index, error.reason.value) for sequence, index, error in dead_letters.sent] == [
        ("1", 2, "LOG_EVENT_INVALID"),
        ("3", None, "DECOMPRESSION_LIMIT"),
    ]


def test_lines_a_caller_wrote_quotes_into_and_dashed_numbers_count() -> None:
    """Through the real `KCLProcess`: a path with `"` and `\\` that API Gateway left unescaped, and
    `-` for status or latency, all count in their endpoint; only a line that is none of ours is a
    dead letter."""
    sink, dead_letters = MemorySink(), RecordingDeadLetters()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(sink, dead_letters, log, flush_interval=5.0, now=lambda: NOW)
    odd = access_logs.line(access_log_line(path='/prod/items/a"b\\c","status":"500'), escape=False)
    records = [
        (1, _log_record(odd, access_log_line(status="-"), access_log_line(responseLatency="-"), "{oops")),
    ]
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(processor)
    get = sink.items[("ENDPOINT#GET /items/{id}", "MINUTE#2026-11-24T17:52")]
    assert (get["responses"], get["s2xx"], get.get("s5xx"), get["latencySum"]) == (3, 2, None, 82)
    assert [(sequence, index, error.reason.value) for sequence, index, error in dead_letters.sent] == [
        ("1", 3, "LOG_EVENT_INVALID")
    ]


def test_a_bad_access_log_line_has_its_own_metric_apart_from_uncounted_records() -> None:
    """A dead-lettered line counts in RejectedAccessLogLines (and its Prometheus counter), never in
    UncountedRecords, which a bad usage record or envelope raises (the two alarms' metrics)."""
    registry, cloudwatch = CollectorRegistry(), RecordingPublisher()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(
        MemorySink(),
        RecordingDeadLetters(),
        log,
        flush_interval=5.0,
        now=lambda: NOW,
        metrics=ProcessorMetrics(registry),
        cloudwatch=cloudwatch,
    )
    records = [(1, _log_record(access_log_line(), "{oops", "[]")), *_calls(1, start=2)]
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(processor)
    assert (cloudwatch.total("RejectedAccessLogLines"), cloudwatch.total("UncountedRecords")) == (2, 0)
    lines = registry.get_sample_value(
        "metering_access_log_lines_rejected_total", {"reason": "LOG_EVENT_INVALID"}
    )
    assert lines == 2
    cloudwatch.samples.clear()
    processor = _processor(MemorySink(), cloudwatch=cloudwatch)
    records = [(1, b"nope"), (2, gzip.compress(b"not an envelope"))]
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(processor)
    assert (cloudwatch.total("RejectedAccessLogLines"), cloudwatch.total("UncountedRecords")) == (0, 2)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=8),
    crash_after_items=st.integers(0, 8),
    replay_sizes=st.lists(st.integers(1, 5), min_size=1, max_size=8),
)
def test_responses_count_exactly_once_through_a_crash_mid_flush_and_a_replay(
    sizes: list[int], crash_after_items: int, replay_sizes: list[int]
) -> None:
    """Access-log records ride the same flush protocol as usage events."""
    records = [
        (i + 1, _log_record(*(access_log_line(status=str(200 + i % 3 * 100)) for _ in range(i % 4 + 1))))
        for i in range(12)
    ]
    truth, sink, clock = MemorySink(), MemorySink(fail_after_items=crash_after_items), FakeClock()
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(_processor(truth))
    daemon = ScriptedDaemon().initialize(SHARD)
    for chunk in chunks(records, sizes):
        daemon.records(chunk)
    with contextlib.suppress(SystemExit):
        daemon.run(_processor(sink, clock, interval=0.0))
    sink.fail_after_items = None
    checkpoint = daemon.last_checkpoint or "TRIM_HORIZON"
    replay = [r for r in records if checkpoint == "TRIM_HORIZON" or r[0] > int(checkpoint)]
    daemon = ScriptedDaemon().initialize(SHARD, checkpoint)
    for chunk in chunks(replay, replay_sizes):
        daemon.records(chunk)
    daemon.shutdown_requested().run(_processor(sink, clock, interval=0.0))
    assert _counts(sink) == _counts(truth)


class RecordingAlerts:
    def __init__(self) -> None:
        self.observed: list[dict[tuple[str, str], dict[str, Any]]] = []
        self.sweeps = 0

    def observe(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.observed.append(items)

    def sweep(self) -> None:
        self.sweeps += 1


def test_each_durable_flush_tells_cloudwatch_and_the_alerts_what_it_counted() -> None:
    """After the checkpoint: the counts by event minute, active users, latencies, records, dead letters;
    the alerts get the flushed items' new values; the sweep runs on its interval."""
    sink, clock, cloudwatch, alerts = MemorySink(), FakeClock(), RecordingPublisher(), RecordingAlerts()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(
        sink,
        RecordingDeadLetters(),
        log,
        flush_interval=5.0,
        monotonic=clock,
        now=lambda: NOW,
        cloudwatch=cloudwatch,
        alerts=alerts,
        alert_sweep_interval=10.0,
    )
    daemon = ScriptedDaemon().initialize(SHARD).records([*_calls(3), (4, b"nope")])
    daemon.run(processor)
    assert cloudwatch.total("ApiCalls") == 0 and alerts.observed == []  # nothing durable yet
    clock.now = 11.0
    daemon.records(_calls(2, start=5)).run(processor)
    assert cloudwatch.total("ApiCalls") == 5
    assert cloudwatch.total("RecordsProcessed") == 6
    assert cloudwatch.total("DeadLetters") == 1
    assert [s.value for s in cloudwatch.samples if s.metric == "ActiveUsers"] == [1]
    assert sum(s.count for s in cloudwatch.samples if s.metric == "ProcessingLatency") == 5
    (items,) = alerts.observed
    assert items[("USER#alice@example.com", "TOTAL")]["calls"] == 5
    assert alerts.sweeps == 1


def test_health_and_durability_metrics() -> None:
    """Leases held, records waiting unflushed (and since when), dead letters sent, decoder errors, lag."""
    registry, clock = CollectorRegistry(), FakeClock()
    log = structlog.get_logger("test")
    processor = UsageRecordProcessor(
        MemorySink(),
        RecordingDeadLetters(),
        log,
        flush_interval=5.0,
        monotonic=clock,
        now=lambda: NOW,
        metrics=ProcessorMetrics(registry),
    )
    sample = registry.get_sample_value
    daemon = ScriptedDaemon().initialize(SHARD).records([*_calls(3), (4, b"nope")])
    daemon.run(processor)
    assert sample("metering_leases_held", {"shard": SHARD}) == 1
    assert sample("metering_pending_records", {"shard": SHARD}) == 4
    assert (sample("metering_unflushed_since_timestamp_seconds", {"shard": SHARD}) or 0) > 0
    assert sample("metering_dead_letters_sent_total", {"reason": "NOT_JSON"}) is None  # not durable yet
    clock.now = 6.0
    daemon.records([]).run(processor)
    assert sample("metering_pending_records", {"shard": SHARD}) == 0
    assert sample("metering_unflushed_since_timestamp_seconds", {"shard": SHARD}) == 0
    assert sample("metering_dead_letters_sent_total", {"reason": "NOT_JSON"}) == 1
    assert sample("metering_event_lag_seconds_count") == 3
    assert sample("metering_decoder_errors_total") == 0
    daemon.lease_lost().run(processor)
    assert sample("metering_leases_held", {"shard": SHARD}) == 0
