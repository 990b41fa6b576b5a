"""`metering usage`: counts from the analytics table by minute, hour, day or month, as readable tables.

Without `--user`: the GLOBAL items of the window and the top users (the bucket index, one query
per bucket, then the items it lists). With `--user`: the user's all-time total (first and last
seen, plan), the user's own items of the window, and a 7 x 24 weekday/hour heatmap of the last 168
hours (hour items live 7 days). `--json` prints the same as one JSON document. Every read is
`reads.usage`'s.

Windows: `--last 15m` (the default for minutes; 24h, 30d and 365d for hours, days and months) is the
buckets ending with the current one; `--from T [--to T]` the buckets [from, to) touches, whole.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table as RichTable
from rich.text import Text

from consumer import aws
from consumer.core.events import utc_now
from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from contract.events import canonical_email, format_timestamp
from contract.table import COUNTER_OF, GLOBAL, user_pk
from metering.commands.replay import parse_time
from metering.errors import usage_error
from reads import Table
from reads.usage import (
    GRANULARITIES,
    MINUTE,
    WEEKDAYS,
    Bucket,
    Counts,
    Granularity,
    UserTotal,
    WeekPattern,
    usage_buckets,
    user_total,
    users_by_bucket,
    week_pattern,
)

_WINDOW = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TOP_USERS = 15
DEFAULT_LAST = {"minute": "15m", "hour": "24h", "day": "30d", "month": "365d"}
# Without --user, each bucket costs one index query (the top users): a day of minutes at most.
MAX_GLOBAL_BUCKETS = 1_440
_SHADES = " ░▒▓█"


def parse_window(text: str) -> timedelta:
    """A span such as `15m`, `2h`, `30d` or `2w`."""
    match = _WINDOW.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise MeteringError(f"--last {text!r}: use minutes, hours, days or weeks, e.g. 15m, 2h, 30d, 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True, slots=True)
class UsageOptions:
    """The command line of `metering usage`, as given."""

    user: str | None = None
    by: str = MINUTE.name
    last: str | None = None
    start: str | None = None  # --from
    end: str | None = None  # --to


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What `metering usage` shows: a series of buckets, and the user's total and pattern or the top users."""

    user: str | None
    granularity: Granularity
    start: datetime  # the first bucket's start
    end: datetime  # the last bucket's end
    buckets: tuple[Bucket, ...]
    total: UserTotal | None = None  # with a user
    pattern: WeekPattern | None = None  # with a user
    users: dict[str, Counts] = field(default_factory=dict)  # without a user: everyone in the window

    def ranked_users(self) -> list[tuple[str, Counts]]:
        """Users by the sum of their counters, most first; ties by email."""
        return sorted(self.users.items(), key=lambda kv: (-sum(kv[1].document().values()), kv[0]))

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "scope": user_pk(self.user) if self.user else GLOBAL,
            "by": self.granularity.name,
            "from": format_timestamp(self.start),
            "to": format_timestamp(self.end),
            "buckets": [bucket.document() for bucket in self.buckets],
        }
        if self.user is not None:
            document["total"] = self.total.document() if self.total else None
            document["pattern"] = self.pattern.document() if self.pattern else None
        else:
            document["users"] = [{"user": email, **c.document()} for email, c in self.ranked_users()]
        return document


def window(options: UsageOptions, now: datetime) -> tuple[Granularity, datetime, datetime]:
    """The granularity and the window [start, end) of whole buckets the options ask for."""
    granularity = GRANULARITIES[options.by]
    if options.start is None:
        if options.end is not None:
            raise usage_error("--to needs --from")
        try:
            span = parse_window(options.last or DEFAULT_LAST[granularity.name])
        except MeteringError as exc:
            raise usage_error(str(exc)) from exc
        # The buckets starting in (now - span, now]: `--last 15m` is 15 minutes, the current one last.
        start = granularity.next(granularity.floor(now - span))
        end = granularity.next(granularity.floor(now))
    else:
        if options.last is not None:
            raise usage_error("--last and --from exclude each other")
        start = parse_instant("--from", options.start, now)
        end = parse_instant("--to", options.end, now) if options.end else now
        if start >= end:
            raise usage_error(
                f"--from must be before --to ({format_timestamp(start)} >= {format_timestamp(end)})"
            )
    first = granularity.floor(start)
    if first < granularity.expired_before(now):
        days = granularity.retention.days
        raise usage_error(
            f"{granularity.name} items are kept {days} days: the window starts {format_timestamp(first)}; "
            "choose a later start or a coarser --by"
        )
    return granularity, first, end


def build_report(table: Table, options: UsageOptions, now: datetime) -> UsageReport:
    """Validate the options, then read what they ask for (key and index queries only)."""
    email = _email(options.user) if options.user is not None else None
    granularity, start, end = window(options, now)
    try:
        starts = granularity.starts(start, end)
    except ValueError as exc:
        raise usage_error(f"--by {granularity.name}: {exc}") from exc
    if email is None and len(starts) > MAX_GLOBAL_BUCKETS:
        raise usage_error(
            f"{len(starts):,} {granularity.name}s: without --user at most {MAX_GLOBAL_BUCKETS:,} "
            "(one index query each); use a coarser --by or a shorter window"
        )
    stop = granularity.next(starts[-1])
    with aws.translated(f"reading {table.name}"):
        if email is None:
            return UsageReport(
                None,
                granularity,
                starts[0],
                stop,
                tuple(usage_buckets(table, GLOBAL, granularity, start, end)),
                users=users_by_bucket(table, granularity, starts),
            )
        return UsageReport(
            email,
            granularity,
            starts[0],
            stop,
            tuple(usage_buckets(table, user_pk(email), granularity, start, end)),
            total=user_total(table, email),
            pattern=week_pattern(table, user_pk(email), now),
        )


def show_usage(
    settings: ConsumerSettings,
    *,
    user: str | None,
    last: str | None,
    watch: float = 0,
    by: str = MINUTE.name,
    start: str | None = None,
    end: str | None = None,
    as_json: bool = False,
    beside: Callable[[datetime], RenderableType] | None = None,
) -> None:
    """Print the report once, or every `watch` seconds (a live view in a terminal) until interrupted;
    `beside` renders more of the same instant under it (not in JSON)."""
    options = UsageOptions(user=user, by=by, last=last, start=start, end=end)
    table = Table(aws.client("dynamodb", settings.region), settings.analytics_table)
    console = Console()
    if as_json or not watch or not console.is_terminal:
        # Piped (`demo | tee`, a log file), a live view would only print its last frame: print each.
        while True:
            now = utc_now()
            print_usage(table, options, now, sys.stdout, as_json=as_json, console=console)
            if beside is not None and not as_json:
                console.print(beside(now))
            if not watch:
                return
            time.sleep(watch)
    with Live(console=console, auto_refresh=False) as live:
        while True:
            now = utc_now()
            view = render_report(build_report(table, options, now))
            live.update(view if beside is None else Group(view, beside(now)), refresh=True)
            time.sleep(watch)


def print_usage(
    table: Table,
    options: UsageOptions,
    now: datetime,
    out: TextIO,
    *,
    as_json: bool,
    console: Console | None = None,
) -> None:
    report = build_report(table, options, now)
    if as_json:
        out.write(json.dumps(report.document(), indent=2) + "\n")
        out.flush()
    else:
        (console or Console(file=out)).print(render_report(report))


def render(client: Any, table: str, user: str | None, span: timedelta, now: datetime) -> Group:
    """Minutes of the last `span` (the view `metering demo` refreshes)."""
    minutes = max(1, int(span.total_seconds() // 60))
    options = UsageOptions(user=user, by=MINUTE.name, last=f"{minutes}m")
    return render_report(build_report(Table(client, table), options, now))


# -- rendering ---------------------------------------------------------------------------------------


def render_report(report: UsageReport) -> Group:
    parts: list[RenderableType] = []
    if report.user is not None:
        parts.append(_total_table(report.user, report.total))
        parts.append(_series_table(f"{report.user}, per {report.granularity.name} (UTC)", report))
        if report.pattern is not None:
            parts.append(heatmap(report.pattern))
    else:
        parts.append(_series_table(f"All users, per {report.granularity.name} (UTC)", report))
        parts.append(_user_table(report))
    return Group(*parts)


def _counter_columns(table: RichTable) -> None:
    for name in COUNTER_OF.values():
        table.add_column(name, justify="right")


def _total_table(email: str, total: UserTotal | None) -> RichTable:
    table = RichTable(title=f"{email}, all time")
    _counter_columns(table)
    for column in ("first seen", "last seen", "plan"):
        table.add_column(column)
    if total is None:
        table.add_row("0", "0", "0", "-", "-", "-")
    else:
        counts = total.counts.document().values()
        table.add_row(
            *(f"{n:,}" for n in counts), total.first_seen or "-", total.last_seen or "-", total.plan or "-"
        )
    return table


def _series_table(title: str, report: UsageReport) -> RichTable:
    table = RichTable(title=title)
    table.add_column(report.granularity.name)
    _counter_columns(table)
    active = report.user is None and any(bucket.active_users is not None for bucket in report.buckets)
    if active:
        table.add_column("active users", justify="right")
    for bucket in report.buckets:
        cells = [f"{n:,}" for n in bucket.counts.document().values()]
        if active:
            cells.append(f"{bucket.active_users or 0:,}")
        table.add_row(bucket.label, *cells)
    return table


def _user_table(report: UsageReport) -> RichTable:
    table = RichTable(title=f"Top users in the window (of {len(report.users)})")
    table.add_column("user")
    _counter_columns(table)
    for email, counts in report.ranked_users()[:TOP_USERS]:
        table.add_row(email, *(f"{n:,}" for n in counts.document().values()))
    return table


def heatmap(pattern: WeekPattern) -> RichTable:
    """The 7 x 24 pattern as shades (darker: more), readable without colour too."""
    peak = pattern.peak
    table = RichTable(
        title=f"{pattern.counter} by weekday and hour (UTC), one hour per cell",
        caption=(
            f"{format_timestamp(pattern.start)} to {format_timestamp(pattern.end)} (hour items live 7 days); "
            f"█ = peak {peak:,}/hour, blank = 0"
        ),
        padding=0,
        show_edge=False,
    )
    table.add_column("", no_wrap=True)
    for hour in range(24):
        table.add_column(f"{hour:02d}", justify="center", no_wrap=True, min_width=3)
    for weekday, row in zip(WEEKDAYS, pattern.cells, strict=True):
        table.add_row(weekday, *(_shade(count, peak) for count in row))
    return table


def _shade(count: int, peak: int) -> Text:
    if count <= 0 or peak <= 0:
        return Text("")
    level = max(1, -(-count * (len(_SHADES) - 1) // peak))  # 1..4, rounded up: any count shows
    return Text(_SHADES[level] * 2, style=("green", "yellow", "dark_orange", "red")[level - 1])


def _email(raw: str) -> str:
    try:
        return canonical_email(raw)
    except ValueError as exc:
        raise usage_error(f"--user: {exc}") from exc


def parse_instant(option: str, text: str, now: datetime) -> datetime:
    try:
        return parse_time(text, now)
    except MeteringError as exc:
        raise usage_error(f"{option}: {exc}") from exc
