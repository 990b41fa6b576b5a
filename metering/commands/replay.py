"""`metering replay`: rebuild the counts of a time window from the stream into a separate table.

The replay is the live consumer run again: the same MultiLangDaemon, record processor and
DynamoDB sink (so the same exactly-once flushes), started by `consumer.daemon` with:

- its own KCL application, `complical-usage-replay-<hash of stream, window, table>`, so the live
  consumer's leases and checkpoints are never touched, and running the same replay again resumes
  from its own checkpoints (re-applied ranges are no-ops thanks to the items' watermarks);
- leases starting `AT_TIMESTAMP` = the window's start minus the allowed clock skew (an event may
  carry a timestamp up to 5 minutes ahead of its arrival), by arrival time;
- a counting window: only events whose own timestamp is in [from, to) are counted; the others
  advance the shard uncounted. Buckets stay those of each event's own timestamp, in UTC.

When is it done? Every shard that is open when the replay starts must have been read up to where
the stream was at that moment. Each shard's processor reports, through a file in a directory this
run owns, once it has flushed and checkpointed everything it received before an empty poll at the
tip (millisBehindLatest == 0), or once it checkpointed its shard end (resharded during the replay).
A child shard starts only after its parents reached their shard end, so a shard open at the start
that reached its tip implies its closed ancestors in the window were read whole. When every such
shard has reported, the daemon is stopped as on SIGTERM (flush, checkpoint) and the command prints
a summary read back from the target table.

The target table holds one replay only: a `REPLAY`/`WINDOW` item records its window and KCL
application, and a table holding anything else is refused. Its TOTAL, HOUR and IP items cover the
window only; no TTL is enabled on it, so the audit copy stays until the table is deleted.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from consumer import aws, daemon, leases
from consumer.core.events import MAX_CLOCK_SKEW, utc_now
from consumer.core.window import CountingWindow
from consumer.errors import MeteringError
from consumer.progress import ProgressFiles
from consumer.settings import ConsumerSettings
from contract.aws import aws_error_code
from contract.events import format_timestamp
from contract.table import analytics_table_spec, read_counters

APPLICATION_PREFIX = "complical-usage-replay-"
# The stream trims continuously: a window whose start is this close to the retention is refused.
RETENTION_MARGIN = timedelta(minutes=10)
META_KEY = {"pk": {"S": "REPLAY"}, "sk": {"S": "WINDOW"}}
_AGE = re.compile(r"^(\d+)([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


# -- pure: times, windows, names, completion -----------------------------------------------------


def parse_time(text: str, now: datetime) -> datetime:
    """An instant: RFC 3339 / ISO 8601 (UTC when it names no zone), `now`, or an age (90m, 2h, 3d).

    Truncated to milliseconds, the precision of event timestamps.
    """
    raw = text.strip()
    age = _AGE.match(raw)
    if raw == "now":
        at = now
    elif age:
        at = now - timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
    else:
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            raise MeteringError(
                f"{text!r} is not a time: use RFC 3339 (2026-11-24T17:00:00Z), now, or an age (90m, 2h, 3d)"
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    return _millis(at)


def _millis(at: datetime) -> datetime:
    """UTC, to the millisecond: what RFC 3339 stamps in the table and the environment carry."""
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    stream: str
    table: str
    window: CountingWindow
    # Read everything the stream still holds, not from the window's start: for a window older than
    # the retention whose events arrived late (re-drives, a producer that was down).
    whole_stream: bool = False

    @property
    def read_from(self) -> datetime:
        """Where reading starts, by arrival time: an event may be ahead of its arrival by the skew."""
        return self.window.start - MAX_CLOCK_SKEW

    @property
    def application_name(self) -> str:
        parts = (
            self.stream,
            format_timestamp(self.window.start),
            format_timestamp(self.window.end),
            self.table,
        )
        identity = "\n".join(parts + (("whole stream",) if self.whole_stream else ()))
        return APPLICATION_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:12]

    def daemon_overrides(self) -> dict[str, str | None]:
        start = {"initialPositionInStream": "TRIM_HORIZON", "initialPositionInStreamExtended": None}
        if not self.whole_stream:
            # 3.1.3 takes the timestamp in epoch seconds; initialPositionInStream would contradict it.
            start = {
                "initialPositionInStream": None,
                "initialPositionInStreamExtended": str(int(self.read_from.timestamp())),
            }
        return start | {
            # On SIGTERM the KCL waits for its leases to expire after the final flush: one worker
            # needs no long failover, and a shorter one ends the replay ~5 s sooner.
            "failoverTimeMillis": "5000",
        }

    @property
    def resume_command(self) -> str:
        """The command that resumes this very replay (relative times such as `2h` would move)."""
        window = f"--from {format_timestamp(self.window.start)} --to {format_timestamp(self.window.end)}"
        whole = " --whole-stream" if self.whole_stream else ""
        return f"metering replay {window} --into {self.table}{whole}"

    def child_env(self, progress_dir: Path) -> dict[str, str]:
        """The settings of the replay's daemon and record processors (see `consumer.settings`)."""
        return {
            "METRICS_PORT": "0",  # a live consumer on this host may hold the port
            "ANALYTICS_TABLE_NAME": self.table,
            "KCL_APPLICATION_NAME": self.application_name,
            "COUNT_EVENTS_FROM": format_timestamp(self.window.start),
            "COUNT_EVENTS_TO": format_timestamp(self.window.end),
            "REPLAY_PROGRESS_DIR": str(progress_dir),
        }


def plan_replay(
    *,
    stream: str,
    table: str,
    live_table: str,
    start: datetime,
    end: datetime,
    now: datetime,
    retention: timedelta,
    whole_stream: bool = False,
) -> ReplayPlan:
    if table == live_table:
        raise MeteringError(f"--into {table} is the live analytics table: replay into a separate table")
    if end > now:
        raise MeteringError(f"--to {format_timestamp(end)} is in the future")
    try:
        window = CountingWindow(_millis(start), _millis(end))
    except ValueError as exc:
        raise MeteringError(f"--from/--to: {exc}") from exc
    plan = ReplayPlan(stream, table, window, whole_stream)
    if not whole_stream and plan.read_from < now - retention + RETENTION_MARGIN:
        raise MeteringError(
            f"--from {format_timestamp(start)}: the stream keeps {retention} and reading starts "
            f"{MAX_CLOCK_SKEW} earlier, so part of the window may be trimmed already (events of it "
            "that arrived late are still there: --whole-stream reads everything the stream holds)"
        )
    return plan


def finished(required: Collection[str], reports: Mapping[str, str]) -> bool:
    """Done when every shard open at the start reported its tip or its end."""
    return all(shard in reports for shard in required)


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    plan: ReplayPlan
    events: int
    items: int
    seconds: float

    def describe(self) -> str:
        window = self.plan.window
        return (
            f"replayed {window} into {self.plan.table}: {self.events} events counted, "
            f"{self.items} items, {self.seconds:.1f} s (KCL application {self.plan.application_name})"
        )


# -- the command -----------------------------------------------------------------------------------


def replay(
    settings: ConsumerSettings,
    *,
    start: str,
    end: str | None,
    into: str,
    fresh: bool = False,
    timeout: float = 0,
    whole_stream: bool = False,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> ReplaySummary:
    """Run the replay until every shard has been read to where the stream was when it started."""
    started = time.monotonic()
    now = parse_time("now", utc_now())
    window_start, window_end = parse_time(start, now), parse_time(end or "now", now)
    dynamodb = aws.client("dynamodb", settings.region)
    kinesis = aws.client("kinesis", settings.region)
    recorded = _recorded_window(dynamodb, into)
    if end is None and recorded is not None and recorded.start == window_start and not fresh:
        window_end = recorded.end  # the same command again: resume that replay, not a new one
        report(f"resuming the replay of {recorded} in {into}")
    stream = kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"]
    retention = timedelta(hours=stream["RetentionPeriodHours"])
    plan = plan_replay(
        stream=settings.stream_name,
        table=into,
        live_table=settings.analytics_table,
        start=window_start,
        end=window_end,
        now=now,
        retention=retention,
        whole_stream=whole_stream,
    )
    if fresh:
        _start_over(dynamodb, plan, report)
    _prepare_table(dynamodb, plan)
    open_shards = sorted(shard["ShardId"] for shard in aws.open_shards(kinesis, settings.stream_name))
    origin = "their oldest record" if whole_stream else format_timestamp(plan.read_from)
    report(
        f"replaying {plan.window} into {into}: reading "
        f"{len(open_shards)} shards from {origin} as {plan.application_name}"
    )
    with tempfile.TemporaryDirectory(prefix="metering-replay-") as workdir:
        progress = ProgressFiles(Path(workdir))
        env = plan.child_env(Path(workdir))
        watch = _Watch(open_shards, progress, report, deadline=started + timeout if timeout else None)
        code = daemon.run(
            ConsumerSettings.from_env(os.environ | env),
            overrides=plan.daemon_overrides(),
            env=env,
            until=watch,
        )
        done = finished(open_shards, progress.reports())
    resume = f"resume with `{plan.resume_command}`"
    if code != 0:
        raise MeteringError(f"the replay's KCL daemon failed (exit {code}); {resume}")
    if not done:
        reason = "timed out" if watch.timed_out else "interrupted"
        raise MeteringError(f"replay {reason} before every shard was read; {resume}")
    events, items = _table_totals(dynamodb, into)
    return ReplaySummary(plan, events, items, time.monotonic() - started)


class _Watch:
    """The daemon's stop condition: every shard reported (or the deadline passed); logs progress."""

    def __init__(
        self,
        required: list[str],
        progress: ProgressFiles,
        report: Callable[[str], None],
        deadline: float | None,
    ) -> None:
        self._required = required
        self._progress = progress
        self._report = report
        self._deadline = deadline
        self._seen: set[str] = set()
        self.timed_out = False

    def __call__(self) -> bool:
        reports = self._progress.reports()
        for shard in sorted(reports.keys() - self._seen):
            self._seen.add(shard)
            done = sum(s in reports for s in self._required)
            self._report(f"  {shard}: {reports[shard]} ({done}/{len(self._required)} shards done)")
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.timed_out = True
            return True
        return finished(self._required, reports)


# -- AWS -------------------------------------------------------------------------------------------


def _recorded_window(dynamodb: Any, table: str) -> CountingWindow | None:
    item = _meta_item(dynamodb, table)
    if item is None:
        return None
    return CountingWindow(datetime.fromisoformat(item["from"]["S"]), datetime.fromisoformat(item["to"]["S"]))


def _meta_item(dynamodb: Any, table: str) -> dict[str, Any] | None:
    try:
        item: dict[str, Any] | None = dynamodb.get_item(
            TableName=table, Key=META_KEY, ConsistentRead=True
        ).get("Item")
    except ClientError as exc:
        if aws_error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    return item


def _prepare_table(dynamodb: Any, plan: ReplayPlan) -> None:
    """Create the target if missing and claim it for this replay; refuse a table holding anything else."""
    aws.create_table(dynamodb, analytics_table_spec(plan.table))
    meta = _meta_item(dynamodb, plan.table)
    if meta is None:
        if aws.holds_items(dynamodb, plan.table):
            raise MeteringError(f"{plan.table} is not empty and holds no replay: refusing to write into it")
        item = META_KEY | {
            "from": {"S": format_timestamp(plan.window.start)},
            "to": {"S": format_timestamp(plan.window.end)},
            "stream": {"S": plan.stream},
            "application": {"S": plan.application_name},
        }
        try:
            dynamodb.put_item(TableName=plan.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                raise
        meta = _meta_item(dynamodb, plan.table) or {}
    if meta.get("application", {}).get("S") != plan.application_name:
        held = f"[{meta.get('from', {}).get('S')}, {meta.get('to', {}).get('S')})"
        raise MeteringError(
            f"{plan.table} holds the replay of {held}: choose another --into, or pass --fresh to replace it"
        )


def _start_over(dynamodb: Any, plan: ReplayPlan, report: Callable[[str], None]) -> None:
    """--fresh: drop the target table (if it holds a replay or nothing) and the replay's KCL tables."""
    meta = _meta_item(dynamodb, plan.table)
    applications = {plan.application_name}
    if meta is not None:
        applications.add(meta["application"]["S"])
    elif _table_exists(dynamodb, plan.table) and aws.holds_items(dynamodb, plan.table):
        raise MeteringError(f"{plan.table} is not empty and holds no replay: refusing to delete it")
    tables = [plan.table] + [
        spec["TableName"] for app in sorted(applications) for spec in leases.kcl_table_specs(app)
    ]
    for table in tables:
        if _table_exists(dynamodb, table):
            dynamodb.delete_table(TableName=table)
            dynamodb.get_waiter("table_not_exists").wait(
                TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            report(f"deleted {table}")


def _table_exists(dynamodb: Any, table: str) -> bool:
    try:
        dynamodb.describe_table(TableName=table)
    except ClientError as exc:
        if aws_error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def _table_totals(dynamodb: Any, table: str) -> tuple[int, int]:
    """Events counted (the sum of the GLOBAL minute items) and counter items in the target."""
    events = 0
    for page in dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :minute)",
        ExpressionAttributeValues={":pk": {"S": "GLOBAL"}, ":minute": {"S": "MINUTE#"}},
        ConsistentRead=True,
    ):
        events += sum(sum(read_counters(item).values()) for item in page["Items"])
    items = 0
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        Select="COUNT",
        FilterExpression=" OR ".join(
            ["pk = :global", "begins_with(pk, :user)", "begins_with(pk, :ip)", "begins_with(pk, :key)"]
        ),
        ExpressionAttributeValues={
            ":user": {"S": "USER#"},
            ":ip": {"S": "IP#"},
            ":key": {"S": "KEY#"},
            ":global": {"S": "GLOBAL"},
        },
        ConsistentRead=True,
    ):
        items += page["Count"]
    return events, items
