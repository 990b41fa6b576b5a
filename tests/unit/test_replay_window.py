"""Replay windows: time parsing, the counting window, the plan's checks and names, completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from consumer.core.window import CountingWindow
from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from contract.environment import ConfigError
from contract.events import format_timestamp
from metering.commands.replay import APPLICATION_PREFIX, ReplayPlan, finished, parse_time, plan_replay

NOW = datetime(2026, 11, 25, 12, 0, 30, 123456, tzinfo=UTC)
WEEK = timedelta(days=7)


def _plan(start: datetime, end: datetime, table: str = "audit", now: datetime = NOW) -> ReplayPlan:
    return plan_replay(
        stream="s", table=table, live_table="live", start=start, end=end, now=now, retention=WEEK
    )


def test_parse_time_accepts_rfc3339_with_z_or_offset() -> None:
    """A zone-qualified time is converted to UTC."""
    assert parse_time("2026-11-24T17:00:00Z", NOW) == datetime(2026, 11, 24, 17, tzinfo=UTC)
    assert parse_time("2026-11-24T18:00:00+01:00", NOW) == datetime(2026, 11, 24, 17, tzinfo=UTC)


def test_parse_time_reads_a_time_without_zone_as_utc() -> None:
    """Buckets are UTC, so a bare time means UTC."""
    assert parse_time("2026-11-24T17:05", NOW) == datetime(2026, 11, 24, 17, 5, tzinfo=UTC)


def test_parse_time_accepts_now_and_ages_truncated_to_milliseconds() -> None:
    """`now` and ages count back from now; sub-millisecond digits are dropped."""
    now_ms = NOW.replace(microsecond=123000)
    assert parse_time("now", NOW) == now_ms
    assert parse_time("90m", NOW) == now_ms - timedelta(minutes=90)
    assert parse_time("2h", NOW) == now_ms - timedelta(hours=2)
    assert parse_time("3d", NOW) == now_ms - timedelta(days=3)
    assert parse_time("45s", NOW) == now_ms - timedelta(seconds=45)


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-2h", "2026-13-01T00:00Z", ""])
def test_parse_time_rejects_other_forms(text: str) -> None:
    """Anything else is refused with a message showing the accepted forms."""
    with pytest.raises(MeteringError, match="RFC 3339"):
        parse_time(text, NOW)


def test_counting_window_is_half_open() -> None:
    """The start is in the window, the end is not."""
    start = datetime(2026, 11, 24, 17, tzinfo=UTC)
    window = CountingWindow(start, start + timedelta(minutes=4))
    assert start in window
    assert start + timedelta(minutes=4) - timedelta(milliseconds=1) in window
    assert start + timedelta(minutes=4) not in window
    assert start - timedelta(milliseconds=1) not in window
    assert start.astimezone(timezone(timedelta(hours=2))) in window


def test_counting_window_refuses_empty_or_naive_windows() -> None:
    """An empty window or one without a time zone is a mistake."""
    start = datetime(2026, 11, 24, 17, tzinfo=UTC)
    with pytest.raises(ValueError, match="empty"):
        CountingWindow(start, start)
    with pytest.raises(ValueError, match="time zone"):
        CountingWindow(start.replace(tzinfo=None), start + timedelta(hours=1))


def test_settings_read_the_counting_window_and_progress_dir() -> None:
    """The replay's child settings round-trip through the environment."""
    plan = _plan(NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    settings = ConsumerSettings.from_env(plan.child_env(Path("/tmp/progress")))
    assert settings.counting_window == plan.window
    assert settings.progress_dir == Path("/tmp/progress")
    assert settings.analytics_table == "audit"
    assert settings.application_name == plan.application_name
    assert ConsumerSettings.from_env({}).counting_window is None
    assert settings.metrics_port == 0  # never competes with a live consumer for its port


def test_the_resume_command_names_the_window_absolutely() -> None:
    """`--from 2h` moves with the clock; the command printed to resume a replay does not."""
    plan = _plan(NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    start, end = format_timestamp(plan.window.start), format_timestamp(plan.window.end)
    assert plan.resume_command == f"metering replay --from {start} --to {end} --into audit"


@pytest.mark.parametrize(
    "env",
    [
        {"COUNT_EVENTS_FROM": "2026-11-24T17:00:00Z"},
        {"COUNT_EVENTS_FROM": "2026-11-24T17:00:00", "COUNT_EVENTS_TO": "2026-11-24T18:00:00"},
        {"COUNT_EVENTS_FROM": "2026-11-24T18:00:00Z", "COUNT_EVENTS_TO": "2026-11-24T17:00:00Z"},
    ],
)
def test_settings_refuse_a_half_or_bad_counting_window(env: dict[str, str]) -> None:
    """One bound alone, no time zone, or an empty window stops start-up."""
    with pytest.raises(ConfigError, match="COUNT_EVENTS_FROM"):
        ConsumerSettings.from_env(env)


def test_plan_reads_from_five_minutes_before_the_window() -> None:
    """An event may be up to 5 minutes ahead of its arrival, so reading starts that much earlier."""
    start = datetime(2026, 11, 25, 10, tzinfo=UTC)
    plan = _plan(start, start + timedelta(hours=1))
    assert plan.read_from == start - timedelta(minutes=5)
    overrides = plan.daemon_overrides()
    assert overrides["initialPositionInStream"] is None
    assert overrides["initialPositionInStreamExtended"] == str(int(plan.read_from.timestamp()))


def test_plan_refuses_the_live_table_a_future_end_and_an_empty_window() -> None:
    """Replaying into the live table would count twice; a future or empty window is a mistake."""
    start = NOW - timedelta(hours=1)
    with pytest.raises(MeteringError, match="live analytics table"):
        _plan(start, NOW, table="live")
    with pytest.raises(MeteringError, match="future"):
        _plan(start, NOW + timedelta(seconds=1))
    with pytest.raises(MeteringError, match="empty"):
        _plan(start, start)


def test_plan_refuses_a_window_the_stream_may_have_trimmed() -> None:
    """Reading must start comfortably inside the stream's retention."""
    with pytest.raises(MeteringError, match="trimmed"):
        _plan(NOW - WEEK, NOW - WEEK + timedelta(hours=1))
    assert _plan(NOW - WEEK + timedelta(minutes=20), NOW).window.end == NOW.replace(microsecond=123000)


def test_a_whole_stream_replay_counts_an_old_window_from_the_streams_oldest_record() -> None:
    """Events of a month ago that arrived late are still in the stream: read it all, count the window."""
    start = NOW - timedelta(days=30)
    plan = plan_replay(
        stream="s", table="audit", live_table="live", start=start, end=start + timedelta(hours=1),
        now=NOW, retention=WEEK, whole_stream=True,
    )  # fmt: skip
    assert plan.daemon_overrides()["initialPositionInStream"] == "TRIM_HORIZON"
    assert plan.daemon_overrides()["initialPositionInStreamExtended"] is None
    assert plan.resume_command.endswith("--into audit --whole-stream")
    assert plan.application_name != ReplayPlan("s", "audit", plan.window).application_name


def test_application_name_is_stable_and_unique_per_window_and_table() -> None:
    """The same replay finds its own leases again; another window or table gets other leases."""
    start, end = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    name = _plan(start, end).application_name
    assert name.startswith(APPLICATION_PREFIX)
    assert name == _plan(start, end).application_name
    assert name != _plan(start, end + timedelta(minutes=1)).application_name
    assert name != _plan(start, end, table="audit2").application_name


def test_finished_needs_every_shard_open_at_the_start() -> None:
    """A shard counts as done once caught up or ended; shards not required do not matter."""
    required = ["shardId-0", "shardId-1"]
    assert not finished(required, {})
    assert not finished(required, {"shardId-0": "caught-up", "shardId-9": "ended"})
    assert finished(required, {"shardId-0": "caught-up", "shardId-1": "ended"})
    assert finished([], {})
