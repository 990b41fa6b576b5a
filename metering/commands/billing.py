"""`metering usage`, `metering events` and `metering export`: the billing read side (issue 11).

- `usage`: counts by minute, hour, day or month, a user's all-time total and weekday/hour pattern
  (`metering.commands.usage`).
- `events`: a user's (or, with `--ip`, a caller without a user's) raw events from the 90-day archive,
  in order: by timestamp, then eventId.
- `export`: one row per user of a month, for an invoicing system: calls, auth failures,
  rate-limited calls, plan, first and last seen. Rows are sorted by email and the file carries no
  time of its own, so two runs over the same table write byte-identical files.

Every read is a key or index query of `reads.usage`; none is a Scan.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table as RichTable

from consumer import aws
from consumer.core.events import utc_now
from consumer.settings import ConsumerSettings
from contract.events import MAX_SOURCE_IP_CHARS, EventType, canonical_email, format_timestamp
from contract.table import COUNTER_OF, ip_pk, user_pk
from metering.commands.usage import DEFAULT_LAST, parse_instant, show_usage
from metering.errors import CommandError, usage_error
from reads import Table
from reads.usage import (
    GRANULARITIES,
    MONTH,
    MonthExport,
    archive_window_start,
    archived_events,
    month_export,
    month_start,
)

EXPORT_COLUMNS = ("month", "email", "plan", *COUNTER_OF.values(), "firstSeen", "lastSeen")
TABLE_ROWS = 1_000  # `events` without --json: rows shown unless --limit says otherwise


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    usage = subparsers.add_parser(
        "usage", help="counts by minute, hour, day or month; a user's total and weekday/hour pattern"
    )
    usage.add_argument("--user", help="one user's email (default: all users)")
    usage.add_argument("--by", choices=tuple(GRANULARITIES), default="minute", help="bucket size (minute)")
    usage.add_argument(
        "--last",
        help="the last N units, e.g. 15m, 24h, 30d, 2w (default: "
        + ", ".join(f"{value} by {name}" for name, value in DEFAULT_LAST.items())
        + ")",
    )
    usage.add_argument("--from", dest="start", help="RFC 3339 (UTC if no zone) or an age: 2h, 3d")
    usage.add_argument("--to", dest="end", help="same forms; default now")
    usage.add_argument("--watch", type=float, default=0, help="refresh every N seconds")
    usage.add_argument("--json", action="store_true", help="print one JSON document (per refresh)")
    usage.set_defaults(handler=usage_command)

    events = subparsers.add_parser("events", help="a caller's raw events from the 90-day archive, in order")
    caller = events.add_mutually_exclusive_group(required=True)
    caller.add_argument("--user", help="the user's email")
    caller.add_argument("--ip", help="a source IP, for callers without a user")
    events.add_argument("--from", dest="start", required=True, help="RFC 3339 (UTC if no zone) or an age")
    events.add_argument("--to", dest="end", default="now", help="same forms; default now")
    events.add_argument(
        "--type", dest="types", action="append", choices=[t.value for t in EventType], help="repeatable"
    )
    events.add_argument("--json", action="store_true", help="one event per line (JSON Lines), as sent")
    events.add_argument("--limit", type=int, default=0, help=f"at most N events (table: {TABLE_ROWS:,})")
    events.set_defaults(handler=events_command)

    export = subparsers.add_parser("export", help="one row per user of a month, for invoicing")
    export.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", type=Path, help="write this file (atomically) instead of stdout")
    export.set_defaults(handler=export_command)


# -- usage ---------------------------------------------------------------------------------------------


def usage_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    show_usage(
        settings,
        user=args.user,
        last=args.last,
        watch=args.watch,
        by=args.by,
        start=args.start,
        end=args.end,
        as_json=args.json,
    )
    return 0


# -- events --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventsQuery:
    caller_pk: str  # USER#<email> or IP#<ip>
    start: datetime
    end: datetime
    types: tuple[str, ...] | None
    limit: int  # 0: no limit


def events_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    table = Table(aws.client("dynamodb", settings.region), settings.analytics_table)
    print_events(table, events_query(args, utc_now()), sys.stdout, as_json=args.json)
    return 0


def events_query(args: argparse.Namespace, now: datetime) -> EventsQuery:
    """The command line as a query; a value that cannot work is a usage error (exit 2)."""
    if args.user is not None:
        try:
            caller = user_pk(canonical_email(args.user))
        except ValueError as exc:
            raise usage_error(f"--user: {exc}") from exc
    else:
        address = args.ip.strip()
        if not address or len(address) > MAX_SOURCE_IP_CHARS:
            raise usage_error(f"--ip: a source IP of 1 to {MAX_SOURCE_IP_CHARS} characters")
        caller = ip_pk(address)
    start, end = parse_instant("--from", args.start, now), parse_instant("--to", args.end, now)
    if start >= end:
        raise usage_error(
            f"--from must be before --to ({format_timestamp(start)} >= {format_timestamp(end)})"
        )
    if start < archive_window_start(now):
        raise usage_error(
            f"the archive keeps 90 days: --from must be after {format_timestamp(archive_window_start(now))}"
        )
    if args.limit < 0:
        raise usage_error("--limit: 0 (no limit) or more")
    return EventsQuery(caller, start, end, tuple(args.types) if args.types else None, args.limit)


def read_events(table: Table, query: EventsQuery, limit: int) -> Iterator[dict[str, Any]]:
    """The query's events in order, at most `limit` (0: all), DynamoDB errors translated."""
    with aws.translated(f"reading the archive of {table.name}"):
        for count, event in enumerate(
            archived_events(table, query.caller_pk, query.start, query.end, query.types), 1
        ):
            yield event
            if count == limit:
                return


def print_events(table: Table, query: EventsQuery, out: TextIO, *, as_json: bool) -> int:
    """Print the events (JSON Lines, or a table); return how many were printed."""
    printed = 0
    if as_json:
        for event in read_events(table, query, query.limit):
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            printed += 1
        out.flush()
        return printed
    limit = query.limit or TABLE_ROWS
    shown = RichTable(
        title=f"{query.caller_pk}, {format_timestamp(query.start)} to {format_timestamp(query.end)}"
    )
    for column in ("timestamp", "type", "method", "path", "reason", "key", "source IP", "event id"):
        shown.add_column(column, no_wrap=column in ("timestamp", "event id"))
    for event in read_events(table, query, limit):
        shown.add_row(
            *(
                str(event.get(name) or "-")
                for name in (
                    "timestamp",
                    "eventType",
                    "httpMethod",
                    "path",
                    "reason",
                    "apiKeyId",
                    "sourceIp",
                    "eventId",
                )
            )
        )
        printed += 1
    if printed == limit:
        shown.caption = f"the first {limit:,} events; --limit N or --json for more"
    Console(file=out).print(shown)
    return printed


# -- export --------------------------------------------------------------------------------------------


def export_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    table = Table(aws.client("dynamodb", settings.region), settings.analytics_table)
    data, warnings = build_export(table, args.month, args.format, utc_now())
    for warning in warnings:
        print(f"metering: warning: {warning}", file=sys.stderr)
    if args.out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        write_atomically(args.out, data)
    return 0


def build_export(table: Table, month: str, file_format: str, now: datetime) -> tuple[bytes, list[str]]:
    """The export file's bytes and what the operator should know about it.

    Refuses (exit 1) when the index lists fewer or more users than the GLOBAL month item counts: the
    index is eventually consistent, and an invoice must not miss anyone.
    """
    try:
        start = month_start(month)
    except ValueError as exc:
        raise usage_error(f"--month: {exc}") from exc
    if start > now:
        raise usage_error(f"--month {month} has not started")
    with aws.translated(f"reading {table.name}"):
        export = month_export(table, month)
    if not export.complete:
        raise CommandError(
            f"{month}: the bucket index lists {len(export.rows):,} users, the GLOBAL month item counts "
            f"{export.active_users:,}: the index is catching up; run the export again"
        )
    warnings = []
    if MONTH.next(start) > now:
        warnings.append(f"{month} is not over: its counts still grow")
    if export.unknown_times:
        warnings.append(
            f"{len(export.unknown_times):,} users without first/last seen (month items without them, "
            "and the archive no longer holds the month)"
        )
    return export_bytes(export, file_format), warnings


def export_bytes(export: MonthExport, file_format: str) -> bytes:
    """The file: CSV (a header, `\\n` line ends, empty for unknown values) or one JSON document."""
    if file_format == "json":
        document = {"month": export.month, "users": [row.document() for row in export.rows]}
        return (json.dumps(document, indent=2) + "\n").encode()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in export.rows:
        values = {"month": export.month, **row.document()}
        writer.writerow("" if values[name] is None else values[name] for name in EXPORT_COLUMNS)
    return text.getvalue().encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Write the whole file or nothing: an importer never reads half an export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
