"""Billing reads: a user's usage, a month's invoice rows, the raw-event archive, and what
`GET /v1/usage` answers (issue 11).

Standard library only, like `reads`: each function takes a `Table` and aware datetimes
(windows are [start, end)) and returns frozen dataclasses. Key and index queries only, never a Scan:

| read | items | queries |
|---|---|---|
| `user_total` | `USER#e` / `TOTAL` | one key read |
| `usage_buckets` | one pk's `MINUTE#`, `HOUR#`, `DAY#` or `MONTH#` items of a window | one key query (**) |
| `week_pattern` | one pk's `HOUR#` items of the last 168 hours | one key query |
| `users_by_bucket` | every user's items of some buckets (the bucket index) | a query per bucket (**) (***) |
| `month_export` | a month's users (bucket index), GLOBAL's month item | one index query, one read (*) (***) |
| `archived_events` | `ARCHIVE#USER#e` or `ARCHIVE#IP#ip` pages over the window's hours | one key query |
| `usage_summary` | a user's month item and the month's day items | one key read, one key query |

Retention bounds every read: minute and hour items live 7 days, day items 400 days, month items 25
months, archive pages 90 days (`contract.table`). The heatmap (`week_pattern`) therefore covers the
last 7 days only: each of its 7 x 24 cells is exactly one hour (the 168 hours ending with the
current one), a week's picture rather than an average over many weeks.

(*) plus, for month items written before they carried `firstSeen`/`lastSeen`, the archive (below).
(**) a user's minutes are counters of its hour item (`contract.table.minute_counter`): one more
query, of the hours, adds them to the minute items written before that layout, until those expire.
(***) the index holds keys only: then a BatchGetItem per 100 items (`reads.of_bucket`).

Reads through the bucket index are eventually consistent: `month_export` compares the users it
lists with the GLOBAL month item's exact `activeUsers` and says when they differ.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.events import EventType, format_timestamp
from contract.plans import PLANS, Plan
from contract.table import (
    ACTIVE_USERS,
    ARCHIVE_RETENTION,
    BUCKET_RETENTION,
    COUNTER_OF,
    DAY_PREFIX,
    DAY_RETENTION,
    FIRST_SEEN,
    GLOBAL,
    HOUR_PREFIX,
    LAST_SEEN,
    MINUTE_PREFIX,
    MONTH_PREFIX,
    MONTH_RETENTION,
    PLAN,
    TOTAL,
    USER_PREFIX,
    archive_pk,
    minutes_of_hour,
    user_pk,
)
from reads import Table, of_bucket

CALLS = COUNTER_OF[EventType.API_CALL]
AUTH_FAILURES = COUNTER_OF[EventType.API_AUTH_FAILED]
RATE_LIMITED = COUNTER_OF[EventType.API_RATE_LIMITED]
MAX_BUCKETS = 10_080  # a week of minutes: the longest window any granularity's retention allows
PATTERN_HOURS = 7 * 24
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_HOUR_KEY = len("YYYY-MM-DDTHH")  # an archive page's sort key starts with its hour
_ARCHIVE_END = "~"  # sorts after every character of an archive sort key's tail


# -- counters -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """The three counters of an item; an absent item or counter is 0."""

    calls: int = 0
    auth_failures: int = 0
    rate_limited: int = 0

    @classmethod
    def of(cls, item: Mapping[str, Any] | None) -> Counts:
        if not item:
            return cls()
        return cls(int(item.get(CALLS, 0)), int(item.get(AUTH_FAILURES, 0)), int(item.get(RATE_LIMITED, 0)))

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.calls + other.calls,
            self.auth_failures + other.auth_failures,
            self.rate_limited + other.rate_limited,
        )

    def get(self, counter: str) -> int:
        """A counter by its attribute name (`calls`, `authFailures`, `rateLimited`)."""
        return self.document()[counter]

    def document(self) -> dict[str, int]:
        """The counters by their attribute names, as the table and every JSON answer name them."""
        return {CALLS: self.calls, AUTH_FAILURES: self.auth_failures, RATE_LIMITED: self.rate_limited}


# -- granularities and windows ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Granularity:
    """One family of bucket items: minutes, hours, days or months (UTC)."""

    name: str
    prefix: str  # of the sort key
    retention: timedelta  # how long its items live (their `expiresAt`: start + retention)
    stamp: str  # strftime of the sort key's time

    def floor(self, at: datetime) -> datetime:
        """The start of the bucket holding `at`."""
        at = at.astimezone(UTC)
        if self.prefix == MINUTE_PREFIX:
            return at.replace(second=0, microsecond=0)
        if self.prefix == HOUR_PREFIX:
            return at.replace(minute=0, second=0, microsecond=0)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return day.replace(day=1) if self.prefix == MONTH_PREFIX else day

    def next(self, start: datetime) -> datetime:
        """The start of the bucket after the one starting at `start`."""
        if self.prefix == MONTH_PREFIX:
            return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        step = {MINUTE_PREFIX: timedelta(minutes=1), HOUR_PREFIX: timedelta(hours=1)}
        return start + step.get(self.prefix, timedelta(days=1))

    def label(self, start: datetime) -> str:
        """The bucket as its sort key writes it, without the prefix: `2026-11-24T17`."""
        return f"{start.astimezone(UTC):{self.stamp}}"

    def sk(self, start: datetime) -> str:
        return f"{self.prefix}{self.label(start)}"

    def starts(self, start: datetime, end: datetime) -> list[datetime]:
        """The buckets [start, end) touches, in order; `ValueError` if empty or over `MAX_BUCKETS`."""
        _check_window(start, end)
        found: list[datetime] = []
        at = self.floor(start)
        while at < end:
            if len(found) == MAX_BUCKETS:
                raise ValueError(f"more than {MAX_BUCKETS:,} {self.name}s: choose a coarser granularity")
            found.append(at)
            at = self.next(at)
        return found

    def expired_before(self, now: datetime) -> datetime:
        """Buckets starting before this instant have expired (or are about to)."""
        return now - self.retention


MINUTE = Granularity("minute", MINUTE_PREFIX, BUCKET_RETENTION, "%Y-%m-%dT%H:%M")
HOUR = Granularity("hour", HOUR_PREFIX, BUCKET_RETENTION, "%Y-%m-%dT%H")
DAY = Granularity("day", DAY_PREFIX, DAY_RETENTION, "%Y-%m-%d")
MONTH = Granularity("month", MONTH_PREFIX, MONTH_RETENTION, "%Y-%m")
GRANULARITIES = {g.name: g for g in (MINUTE, HOUR, DAY, MONTH)}


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes (UTC)")
    if start >= end:
        raise ValueError(f"the window is empty: {start.isoformat()} is not before {end.isoformat()}")


# -- a user's all-time total, and any pk's buckets ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserTotal:
    """A user's all-time item: counters, first and last event times, the plan of its last call."""

    email: str
    counts: Counts
    first_seen: str | None  # RFC 3339, as stored
    last_seen: str | None
    plan: str | None

    def document(self) -> dict[str, Any]:
        return {
            "user": self.email,
            **self.counts.document(),
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "plan": self.plan,
        }


def user_total(table: Table, email: str) -> UserTotal | None:
    """The user's TOTAL item (`email` in its canonical form), or None if it never called."""
    item = table.item(user_pk(email), TOTAL)
    if item is None:
        return None
    return UserTotal(email, Counts.of(item), item.get(FIRST_SEEN), item.get(LAST_SEEN), item.get(PLAN))


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of a series: its start, its label (`2026-11-24T17`) and its counters."""

    start: datetime
    label: str
    counts: Counts
    active_users: int | None = None  # GLOBAL hour, day and month items only

    def document(self) -> dict[str, Any]:
        extra = {} if self.active_users is None else {ACTIVE_USERS: self.active_users}
        return {"bucket": self.label, **self.counts.document(), **extra}


def usage_buckets(
    table: Table, pk: str, granularity: Granularity, start: datetime, end: datetime
) -> list[Bucket]:
    """Every bucket of `pk` that [start, end) touches, in order, zeros where no item exists.

    `pk` is `USER#<email>` or `GLOBAL` (or any pk with bucket items). Buckets are whole: the first and
    last may hold events outside [start, end).
    """
    starts = granularity.starts(start, end)
    found = {
        item["sk"]: item for item in table.between(pk, granularity.sk(starts[0]), granularity.sk(starts[-1]))
    }
    minutes: dict[str, dict[str, int]] = {}
    if granularity is MINUTE and pk.startswith(USER_PREFIX):
        minutes = _minutes_of(table.between(pk, HOUR.sk(starts[0]), HOUR.sk(starts[-1])))
    buckets = []
    for at in starts:
        item = found.get(granularity.sk(at))
        active = item.get(ACTIVE_USERS) if item else None
        counts = Counts.of(item) + Counts.of(minutes.get(granularity.sk(at)))
        buckets.append(Bucket(at, granularity.label(at), counts, active))
    return buckets


def users_by_bucket(table: Table, granularity: Granularity, starts: Iterable[datetime]) -> dict[str, Counts]:
    """Every user with items among these buckets and their counts added up (one index query each;
    for minutes, one per hour as well: a user's minutes are counters of its hour item)."""
    totals: dict[str, Counts] = {}

    def add(item: Mapping[str, Any]) -> None:
        email = item["pk"].removeprefix(USER_PREFIX)
        totals[email] = totals.get(email, Counts()) + Counts.of(item)

    starts = list(starts)
    for at in starts:
        for item in of_bucket(table, granularity.sk(at), USER_PREFIX):  # minutes: items written before
            add(item)
    if granularity is MINUTE:
        wanted = {MINUTE.sk(at) for at in starts}
        for hour in sorted({HOUR.sk(at) for at in starts}):
            for item in of_bucket(table, hour, USER_PREFIX):
                found = _minutes_of([item])
                for sk in wanted & found.keys():
                    add({"pk": item["pk"], **found[sk]})
    return totals


def _minutes_of(hour_items: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The minute counters of user hour items, by minute sort key."""
    found: dict[str, dict[str, int]] = {}
    for item in hour_items:
        found.update(minutes_of_hour(item["sk"], item))
    return found


# -- the 7 x 24 pattern ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeekPattern:
    """Counts by UTC weekday (Monday first) and hour of day, over the 168 hours [start, end)."""

    start: datetime
    end: datetime
    counter: str  # which counter the cells hold
    cells: tuple[tuple[int, ...], ...]  # cells[weekday][hour]

    @property
    def peak(self) -> int:
        return max(max(row) for row in self.cells)

    def document(self) -> dict[str, Any]:
        return {
            "from": format_timestamp(self.start),
            "to": format_timestamp(self.end),
            "counter": self.counter,
            "weekdays": list(WEEKDAYS),
            "cells": [list(row) for row in self.cells],
        }


def week_pattern(table: Table, pk: str, now: datetime, counter: str = CALLS) -> WeekPattern:
    """The last 168 hours of `pk`'s hour items (the current hour included), by weekday and hour.

    Hour items live 7 days, so this is as far back as hours go: every cell is one hour, once.
    """
    if counter not in COUNTER_OF.values():
        raise ValueError(f"counter: one of {', '.join(COUNTER_OF.values())}, got {counter!r}")
    end = HOUR.next(HOUR.floor(now))
    start = end - timedelta(hours=PATTERN_HOURS)
    cells = [[0] * 24 for _ in WEEKDAYS]
    for bucket in usage_buckets(table, pk, HOUR, start, end):
        cells[bucket.start.weekday()][bucket.start.hour] += bucket.counts.get(counter)
    return WeekPattern(start, end, counter, tuple(tuple(row) for row in cells))


# -- a month's invoice rows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One user's month: what an invoicing system imports."""

    email: str
    counts: Counts
    plan: str | None  # the plan of the user's last call in the month (None: no call carried one)
    first_seen: str | None  # the user's first and last events of the month, RFC 3339
    last_seen: str | None

    def document(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "plan": self.plan,
            **self.counts.document(),
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
        }


@dataclass(frozen=True, slots=True)
class MonthExport:
    month: str  # YYYY-MM
    rows: tuple[MonthRow, ...]  # sorted by email
    active_users: int | None  # the GLOBAL month item's exact count (None: no such item or attribute)

    @property
    def complete(self) -> bool:
        """The index listed as many users as GLOBAL counted (it is eventually consistent)."""
        return self.active_users is None or self.active_users == len(self.rows)

    @property
    def unknown_times(self) -> tuple[str, ...]:
        """Users whose first/last seen neither their month item nor the archive could tell."""
        return tuple(row.email for row in self.rows if row.first_seen is None)


def month_start(month: str) -> datetime:
    """`2026-11` as the instant it starts (UTC); `ValueError` for anything else."""
    match = _MONTH.match(month)
    if not match:
        raise ValueError(f"{month!r} is not a month: use YYYY-MM, e.g. 2026-11")
    year, number = int(match.group(1)), int(match.group(2))
    if not 1 <= number <= 12:
        raise ValueError(f"{month!r} is not a month: use YYYY-MM, e.g. 2026-11")
    return datetime(year, number, 1, tzinfo=UTC)


def month_export(table: Table, month: str) -> MonthExport:
    """Every user with a month item in `month` (YYYY-MM), with counters, plan and first/last seen.

    Rows are sorted by email, so the same table gives the same rows. The month items' own
    `firstSeen`, `lastSeen` and `plan` are used when present; items written before those attributes
    existed fall back to the archive (exact while it holds the month, 90 days): the first and last
    active days (from the day items) are read there, and the plan is that of the month's last event
    carrying one.
    """
    start = month_start(month)
    sk = MONTH.sk(start)
    items = sorted(of_bucket(table, sk, USER_PREFIX), key=lambda item: str(item["pk"]))
    rows = tuple(_month_row(table, start, item) for item in items)
    total = table.item(GLOBAL, sk)
    active = total.get(ACTIVE_USERS) if total else None
    return MonthExport(month, rows, int(active) if active is not None else None)


def _month_row(table: Table, start: datetime, item: dict[str, Any]) -> MonthRow:
    email = str(item["pk"]).removeprefix(USER_PREFIX)
    counts = Counts.of(item)
    if FIRST_SEEN in item and LAST_SEEN in item:
        return MonthRow(email, counts, item.get(PLAN), item[FIRST_SEEN], item[LAST_SEEN])
    first, last, plan = _month_from_archive(table, email, start)
    return MonthRow(email, counts, item.get(PLAN, plan), first, last)


def _month_from_archive(
    table: Table, email: str, start: datetime
) -> tuple[str | None, str | None, str | None]:
    """First and last event times of the user's month and the plan of its last event carrying one."""
    end = MONTH.next(start)
    days = [
        day.start for day in usage_buckets(table, user_pk(email), DAY, start, end) if day.counts != Counts()
    ]
    if not days:
        return None, None, None
    caller = user_pk(email)
    first = next(iter(_hour_by_hour(table, caller, days[0], DAY.next(days[0]))), None)
    first_seen = format_timestamp(first[0].at) if first else None
    last_seen: str | None = None
    for day in reversed(days):
        for hour in reversed(list(_hour_by_hour(table, caller, day, DAY.next(day)))):
            last_seen = last_seen or format_timestamp(hour[-1].at)
            plan = next((e.event.get("plan") for e in reversed(hour) if e.event.get("plan")), None)
            if plan is not None:
                return first_seen, last_seen, str(plan)
    return first_seen, last_seen, None


# -- the raw-event archive ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    at: datetime  # the event's own timestamp
    event: dict[str, Any]  # the event as it was sent (a usage event v1 document)

    @property
    def order(self) -> tuple[datetime, str]:
        return self.at, str(self.event.get("eventId", ""))


def archived_events(
    table: Table,
    caller_pk: str,
    start: datetime,
    end: datetime,
    types: Collection[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The caller's events with timestamps in [start, end), by timestamp then eventId.

    `caller_pk` is `USER#<email>`, or `IP#<ip>` for callers without a user. `types` keeps only those
    event types. Pages are kept per hour of the events' own time, so the events are sorted and yielded
    one hour at a time: memory holds one hour of the caller's events, whatever the window.
    """
    _check_window(start, end)
    wanted = None if types is None else frozenset(types)
    for hour in _hour_by_hour(table, caller_pk, start, end):
        yield from (
            e.event
            for e in hour
            if start <= e.at < end and (wanted is None or e.event.get("eventType") in wanted)
        )


def _hour_by_hour(
    table: Table, caller_pk: str, start: datetime, end: datetime
) -> Iterator[list[ArchivedEvent]]:
    """Each hour's archived events of [start, end)'s hours, sorted, hours with none left out."""
    first = f"{HOUR.floor(start):%Y-%m-%dT%H}"
    last = f"{HOUR.floor(end - timedelta(microseconds=1)):%Y-%m-%dT%H}{_ARCHIVE_END}"
    current, events = "", list[ArchivedEvent]()
    for page in table.between(archive_pk(caller_pk), first, last):
        hour = str(page["sk"])[:_HOUR_KEY]
        if hour != current and events:
            yield sorted(events, key=lambda e: e.order)
            events = []
        current = hour
        page_hour = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        events += (ArchivedEvent(_event_time(event, page_hour), event) for event in unpack_page(page["data"]))
    if events:
        yield sorted(events, key=lambda e: e.order)


def unpack_page(data: bytes) -> list[dict[str, Any]]:
    """An archive page's events as sent (`consumer.core.archive.pack` wrote it: zlib of a JSON array)."""
    events = json.loads(zlib.decompress(data))
    return [event for event in events if isinstance(event, dict)]


def _event_time(event: Mapping[str, Any], page_hour: datetime) -> datetime:
    """An archived event's timestamp; the consumer accepted it, so it is RFC 3339 with a zone.

    The decoder also takes a lower-case `t`/`z`, which `fromisoformat` does not. Should a stamp still
    not parse, the event keeps its page's hour rather than being lost.
    """
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        for text in (stamp, stamp.upper()):
            try:
                at = datetime.fromisoformat(text)
            except ValueError:
                continue
            if at.tzinfo is not None:
                return at.astimezone(UTC)
    return page_hour


# -- GET /v1/usage ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """A user's own usage as the usage endpoint answers it: today, this month, each day of it."""

    email: str
    plan_name: str | None  # the calling key's plan
    as_of: datetime
    month: Counts
    days: tuple[Bucket, ...]  # the month's days up to today (the last one), zeros included

    @property
    def plan(self) -> Plan | None:
        return PLANS.get(self.plan_name or "")

    def document(self) -> dict[str, Any]:
        plan, today = self.plan, self.days[-1]
        allowance = plan.monthly_calls if plan else None
        return {
            "user": self.email,
            "asOf": format_timestamp(self.as_of),
            "plan": {
                "name": self.plan_name,
                "monthlyCalls": allowance,
                "perSecond": plan.per_second if plan else None,
                "perMinute": plan.per_minute if plan else None,
            },
            "today": {"date": today.label, **today.counts.document()},
            "month": {
                "month": MONTH.label(self.as_of),
                **self.month.document(),
                "allowance": allowance,
                "remaining": None if allowance is None else max(0, allowance - self.month.calls),
                "overage": None if allowance is None else max(0, self.month.calls - allowance),
            },
            "days": [{"date": day.label, **day.counts.document()} for day in self.days],
        }


def usage_summary(table: Table, email: str, plan_name: str | None, now: datetime) -> UsageSummary:
    """The user's month item and the month's day items up to today: one key read, one key query.

    Only `calls` count against the plan's allowance. Counts lag the calls by the consumer's flush
    (seconds), so the call asking is usually not in them yet.
    """
    start = MONTH.floor(now)
    month_item = table.item(user_pk(email), MONTH.sk(start))
    days = usage_buckets(table, user_pk(email), DAY, start, DAY.next(DAY.floor(now)))
    return UsageSummary(email, plan_name, now.astimezone(UTC), Counts.of(month_item), tuple(days))


def archive_window_start(now: datetime) -> datetime:
    """The oldest instant the archive still holds events of (its pages live 90 days)."""
    return now - ARCHIVE_RETENTION
