"""The replay's pieces around the real record processor: window filter, progress reports, properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import structlog

from consumer import daemon
from consumer.core.window import CountingWindow
from consumer.processor import LoggedDeadLetters, UsageRecordProcessor
from consumer.progress import ProgressFiles
from consumer.settings import ConsumerSettings
from consumer.sinks.memory import MemorySink
from consumer.testing import ScriptedDaemon, event

SHARD = "shardId-000000000000"
NOW = datetime(2026, 11, 25, tzinfo=UTC)
START = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
WINDOW = CountingWindow(START, START + timedelta(minutes=2))


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def caught_up(self, shard_id: str) -> None:
        self.seen.append(("caught-up", shard_id))

    def ended(self, shard_id: str) -> None:
        self.seen.append(("ended", shard_id))


def _processor(sink: MemorySink, reports: Reports | None = None) -> UsageRecordProcessor:
    log = structlog.get_logger("test")
    return UsageRecordProcessor(
        sink,
        LoggedDeadLetters(log),
        log,
        flush_interval=60.0,
        monotonic=lambda: 0.0,
        now=lambda: NOW,
        window=WINDOW,
        progress=reports,
    )


def _at(minutes: float, seq: int) -> tuple[int, bytes]:
    return seq, orjson.dumps(event(at=START + timedelta(minutes=minutes)))


def test_events_outside_the_window_advance_the_shard_uncounted() -> None:
    """Only events stamped in [from, to) count; the checkpoint still covers every record."""
    sink = MemorySink()
    records = [_at(-0.5, 1), _at(0, 2), _at(1.9, 3), _at(2, 4), _at(3, 5)]
    daemon = ScriptedDaemon().initialize(SHARD, "AT_TIMESTAMP").records(records).shutdown_requested()
    daemon.run(_processor(sink))
    assert daemon.checkpoints == [("5", 0)]
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 2
    assert {k[1] for k in sink.items if k[1].startswith("MINUTE#")} == {
        "MINUTE#2026-11-24T17:52",
        "MINUTE#2026-11-24T17:53",
    }


def test_at_the_tip_it_flushes_checkpoints_then_reports_once() -> None:
    """Behind the tip nothing is reported; at the tip counts are written and checkpointed first."""
    sink, reports = MemorySink(), Reports()
    processor = _processor(sink, reports)
    daemon = ScriptedDaemon().initialize(SHARD).records([_at(0, 1)])
    daemon.run(processor)
    assert reports.seen == [] and daemon.checkpoints == []
    daemon.records([_at(1, 2)], at_tip=True).records([], at_tip=True).run(processor)
    assert daemon.checkpoints == [("2", 0)]
    assert sink.items[("GLOBAL", "HOUR#2026-11-24T17")]["calls"] == 2
    assert reports.seen == [("caught-up", SHARD)]


def test_an_empty_shard_at_the_tip_is_caught_up() -> None:
    """A shard with nothing after the start position is done at its first poll."""
    reports = Reports()
    daemon = ScriptedDaemon().initialize(SHARD, "AT_TIMESTAMP").records([], at_tip=True)
    daemon.run(_processor(MemorySink(), reports))
    assert reports.seen == [("caught-up", SHARD)] and daemon.checkpoints == []


def test_a_refused_checkpoint_is_not_reported() -> None:
    """A shard whose lease moved has not finished its part: no report."""
    reports = Reports()
    daemon = (
        ScriptedDaemon(checkpoint_error="ShutdownException")
        .initialize(SHARD)
        .records([_at(0, 1)])
        .records([], at_tip=True)
    )
    daemon.run(_processor(MemorySink(), reports))
    assert reports.seen == []


def test_shard_end_is_reported_after_its_checkpoint() -> None:
    """A closed shard reports `ended` once every record is counted and the shard end checkpointed."""
    reports = Reports()
    daemon = ScriptedDaemon().initialize(SHARD).records([_at(0, 1)]).shard_ended()
    daemon.run(_processor(MemorySink(), reports))
    assert daemon.checkpoints == [("1", 0), (None, None)]
    assert reports.seen == [("ended", SHARD)]


def test_without_progress_the_tip_changes_nothing() -> None:
    """The live consumer (no progress) keeps its flush interval at the tip."""
    daemon = ScriptedDaemon().initialize(SHARD).records([_at(0, 1)]).records([], at_tip=True)
    daemon.run(_processor(MemorySink()))
    assert daemon.checkpoints == []


def test_a_poll_with_records_is_not_the_tip() -> None:
    """A poll cut short by maxRecords says millisBehindLatest 0 when the rest arrived in the same ms."""
    reports = Reports()
    daemon = ScriptedDaemon().initialize(SHARD).records([_at(0, 1)], at_tip=True)
    daemon.run(_processor(MemorySink(), reports))
    assert reports.seen == []


def test_progress_files_hold_the_latest_state_per_shard(tmp_path: Path) -> None:
    """Reports are whole files, one per shard; an end replaces a tip; odd shard ids are refused."""
    files = ProgressFiles(tmp_path)
    files.caught_up("shardId-000000000000")
    files.caught_up("shardId-000000000001")
    files.ended("shardId-000000000001")
    assert files.reports() == {"shardId-000000000000": "caught-up", "shardId-000000000001": "ended"}
    with pytest.raises(ValueError, match="shard id"):
        files.caught_up("../escape")


def test_properties_overrides_replace_drop_and_add_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay's starting timestamp replaces initialPositionInStream; leases get AT_TIMESTAMP."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = ConsumerSettings.from_env({"KCL_APPLICATION_NAME": "live-app"})
    live = daemon.render_properties(settings)
    assert "initialPositionInStream = TRIM_HORIZON" in live
    assert daemon.initial_position(live) == "TRIM_HORIZON"
    replay = daemon.render_properties(
        settings,
        overrides={
            "initialPositionInStream": None,
            "initialPositionInStreamExtended": "1764000000",
            "applicationName": "replay-app",
        },
    )
    lines = replay.splitlines()
    assert "initialPositionInStreamExtended = 1764000000" in lines
    assert "applicationName = replay-app" in lines
    assert not any(line.startswith("initialPositionInStream ") for line in lines)
    assert "live-app" not in replay
    assert daemon.initial_position(replay) == "AT_TIMESTAMP"
