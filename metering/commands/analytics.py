"""`metering latency | top | security`: API analytics from the analytics table (issue 10).

The reads are `reads.analytics` (key and index queries only, never a Scan). This module
parses the command line, reads latency quantiles from the merged histograms
(`consumer.core.latency`), marks source IPs by the suspicion rules (`consumer.core.suspicion`) and
prints rich tables or, with `--json`, the same as one JSON document (each command builds that
document first and prints its tables from it).

Windows: `--last SPAN` (90m, 24h, 7d: ending now; `metering.commands.usage.parse_window`) or
`--from T [--to T]` (RFC 3339, UTC when it names no zone, or an age; `--to` defaults to now;
`metering.commands.usage.parse_instant`, over `metering.commands.replay.parse_time`).
At most 7 days: minute and hour items expire then. Items are whole minutes or hours, so a window
reads every bucket it touches; the output says which span it read (`read_from`, `read_to`).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from consumer import aws
from consumer.core.events import utc_now
from consumer.core.latency import quantiles
from consumer.core.routes import METHODS, OTHER
from consumer.core.suspicion import SuspicionRules
from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from contract.events import format_timestamp
from contract.table import BUCKET_RETENTION
from metering.commands.usage import parse_instant, parse_window
from metering.errors import usage_error
from reads import Table
from reads.analytics import (
    Coverage,
    EndpointReport,
    EndpointStats,
    IpHour,
    UserUsage,
    endpoint_stats,
    security,
    top_endpoints,
    top_methods,
    user_usage,
)

MAX_WINDOW = BUCKET_RETENTION  # minute and hour items expire 7 days after their bucket
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
TOP_WHAT = ("endpoints", "methods", "users")
DEFAULT_LIMIT = 10

Report = dict[str, Any]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    latency = subparsers.add_parser("latency", help="latency quantiles and error rates per endpoint")
    latency.add_argument("--endpoint", help="one endpoint: a method and a route, e.g. 'GET /items/{id}'")
    window_arguments(latency, "1h")
    latency.set_defaults(handler=latency_command)

    top = subparsers.add_parser("top", help="top endpoints, methods or users by requests")
    top.add_argument("what", choices=TOP_WHAT)
    top.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT, help=f"rows (default {DEFAULT_LIMIT})")
    window_arguments(top, "24h")
    top.set_defaults(handler=top_command)

    guarding = subparsers.add_parser("security", help="suspicious IPs, failing IPs and keys, refusals")
    guarding.add_argument(
        "--rules", type=Path, metavar="FILE", help="suspicion rules, a JSON object (default: the defaults)"
    )
    guarding.add_argument(
        "--limit", type=_positive, default=DEFAULT_LIMIT, help=f"rows per list (default {DEFAULT_LIMIT})"
    )
    window_arguments(guarding, "24h")
    guarding.set_defaults(handler=security_command)


def window_arguments(parser: argparse.ArgumentParser, last: str) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--last", help=f"a span ending now: 90m, 24h, 7d (default {last})")
    when.add_argument("--from", dest="start", help="RFC 3339 (UTC if no zone) or an age: 2h")
    parser.add_argument("--to", dest="end", help="with --from: same forms (default now)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.set_defaults(default_last=last)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, got {text!r}")
    return value


# -- the commands ---------------------------------------------------------------------------------


def latency_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    start, end = window_of(args, utc_now())
    endpoint = endpoint_argument(args.endpoint)
    with reading():
        report = latency_report(endpoint_stats(analytics_table(settings), start, end, endpoint=endpoint))
    emit(args, report, print_latency)
    return 0


def top_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    start, end = window_of(args, utc_now())
    table = analytics_table(settings)
    with reading():
        if args.what == "users":
            report = users_report(table, start, end, args.limit)
        else:
            report = ranking_report(table, start, end, args.what, args.limit)
    emit(args, report, print_top)
    return 0


def security_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    start, end = window_of(args, utc_now())
    rules = load_rules(args.rules)
    with reading():
        report = security_report(analytics_table(settings), start, end, rules, args.limit)
    emit(args, report, print_security)
    return 0


def window_of(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) from `--last`, or `--from` and `--to`; a window that cannot work is a usage error."""
    if args.start is not None:
        start = parse_instant("--from", args.start, now)
        end = parse_instant("--to", args.end, now) if args.end is not None else now
    else:
        if args.end is not None:
            raise usage_error("--to goes with --from (--last always ends now)")
        try:
            start, end = now - parse_window(args.last or args.default_last), now
        except MeteringError as exc:
            raise usage_error(str(exc)) from exc
    if start >= end:
        raise usage_error(
            f"the window is empty: {format_timestamp(start)} is not before {format_timestamp(end)}"
        )
    if end - start > MAX_WINDOW:
        raise usage_error(f"the window is {end - start}: at most 7 days (minute and hour items expire then)")
    return start, end


def load_rules(path: Path | None) -> SuspicionRules:
    """The rules of a JSON file (an object of settings: `consumer.core.suspicion`), or the defaults."""
    if path is None:
        return SuspicionRules()
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise usage_error(f"--rules {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise usage_error(f"--rules {path}: not JSON: {exc}") from exc
    try:
        return SuspicionRules.from_mapping(settings)
    except ValueError as exc:
        raise usage_error(f"--rules {path}: {exc}") from exc


# -- the documents (`--json`) -----------------------------------------------------------------------


def latency_report(report: EndpointReport) -> Report:
    return {
        "window": _window(report.coverage),
        "endpoints": [_endpoint(stats) for stats in report.endpoints],
        "all": _endpoint(report.overall),
    }


def ranking_report(table: Table, start: datetime, end: datetime, what: str, limit: int) -> Report:
    ranking = (top_endpoints if what == "endpoints" else top_methods)(table, start, end)
    total = ranking.total
    return {
        "window": _window(ranking.coverage),
        "what": what,
        "requests": total,
        "count": len(ranking.ranked),
        "top": [
            {"name": r.name, "requests": r.count, "share": r.count / total if total else None}
            for r in ranking.ranked[:limit]
        ],
    }


def users_report(table: Table, start: datetime, end: datetime, limit: int) -> Report:
    usage = user_usage(table, start, end)
    return {
        "window": _window(usage.coverage),
        "what": "users",
        "requests": sum(user.requests for user in usage.users),
        "count": len(usage.users),
        "top": [_user(user) for user in usage.users[:limit]],
    }


def security_report(
    table: Table, start: datetime, end: datetime, rules: SuspicionRules, limit: int
) -> Report:
    found = security(table, start, end)
    marked = [(hour, rules.broken(hour.attributes())) for hour in found.ip_hours]
    suspicious = sorted(
        ((hour, broken) for hour, broken in marked if broken),
        key=lambda hb: (-len(hb[1]), -hb[0].auth_failures, -hb[0].rate_limited, hb[0].hour, hb[0].ip),
    )
    failing_ips = [ip for ip in found.ips if ip.refused]
    limited_users = [user for user in found.users if user.rate_limited]
    reasons = Counter[str]()
    for hour in found.refusals_by_hour:
        reasons.update(hour.reasons)
    return {
        "window": _window(found.coverage),
        "rules": rules.as_dict(),
        "rule_descriptions": rules.describe(),
        "suspicious_ip_hours": len(suspicious),
        "suspicious_ips": [_suspicious(hour, broken) for hour, broken in suspicious[:limit]],
        "failing_ips": len(failing_ips),
        "top_failing_ips": [
            {
                "ip": ip.ip,
                "auth_failures": ip.auth_failures,
                "rate_limited": ip.rate_limited,
                "calls": ip.calls,
                "reasons": dict(ip.reasons),
                "keys_tried": sorted(ip.keys_tried),
                "users_seen": sorted(ip.users_seen),
                "hours": ip.hours,
            }
            for ip in failing_ips[:limit]
        ],
        "failing_keys": len(found.keys),
        "top_failing_keys": [
            {
                "key_id": key.key_id,
                "auth_failures": key.auth_failures,
                "rate_limited": key.rate_limited,
                "reasons": dict(key.reasons),
            }
            for key in found.keys[:limit]
        ],
        "refusals_by_reason": dict(_ranked(reasons)),
        "refusals_by_hour": [
            {"hour": format_timestamp(hour.hour), "total": hour.total, "reasons": dict(hour.reasons)}
            for hour in found.refusals_by_hour
        ],
        "rate_limited_users": len(limited_users),
        "top_rate_limited_users": [_user(user) for user in limited_users[:limit]],
    }


def _window(coverage: Coverage) -> Report:
    return {
        "from": format_timestamp(coverage.start),
        "to": format_timestamp(coverage.end),
        "resolution": coverage.resolution,
        "read_from": format_timestamp(coverage.read_from),
        "read_to": format_timestamp(coverage.read_to),
        "buckets": len(coverage.buckets),
    }


def _endpoint(stats: EndpointStats) -> Report:
    return {
        "endpoint": stats.endpoint,
        "responses": stats.responses,
        "statuses": dict(stats.statuses),
        "error_rate_4xx": stats.error_rate("4xx"),
        "error_rate_5xx": stats.error_rate("5xx"),
        "latency_ms": {"mean": stats.mean_latency_ms, **_quantiles(stats.latency)},
        "integrations": stats.integrations,
        "integration_latency_ms": {
            "mean": stats.mean_integration_latency_ms,
            **_quantiles(stats.integration_latency),
        },
    }


def _quantiles(histogram: Mapping[str, int]) -> dict[str, float | None]:
    values = quantiles(histogram, tuple(QUANTILES.values()))
    return {name: values.get(q) for name, q in QUANTILES.items()}


def _user(user: UserUsage) -> Report:
    return {
        "email": user.email,
        "calls": user.calls,
        "auth_failures": user.auth_failures,
        "rate_limited": user.rate_limited,
        "requests": user.requests,
    }


def _suspicious(hour: IpHour, broken: list[str]) -> Report:
    return {
        "ip": hour.ip,
        "hour": format_timestamp(hour.hour),
        "rules": broken,
        "calls": hour.calls,
        "auth_failures": hour.auth_failures,
        "rate_limited": hour.rate_limited,
        "reasons": dict(hour.reasons),
        "keys_tried": sorted(hour.keys_tried),
        "users_seen": sorted(hour.users_seen),
    }


# -- the tables ----------------------------------------------------------------------------------------


def print_latency(console: Console, report: Report) -> None:
    console.print(latency_table(report))


def latency_table(report: Report) -> RichTable:
    table = RichTable(title="Latency and errors per endpoint")
    table.add_column("endpoint")
    for column in ("responses", "4xx", "5xx", "p50 ms", "p95 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="right")
    for column in ("integration p50", "p95", "p99"):
        table.add_column(column, justify="right")
    for row in report["endpoints"]:
        table.add_row(*_latency_row(row))
    if len(report["endpoints"]) > 1:
        table.add_section()
        table.add_row(*_latency_row(report["all"] | {"endpoint": "[bold]all endpoints[/bold]"}))
    return table


def latency_view(settings: ConsumerSettings, span: timedelta) -> Callable[[datetime], RichTable]:
    """The latency table of the last `span`, read anew at each call (the view `metering demo` adds)."""
    table = analytics_table(settings)

    def view(now: datetime) -> RichTable:
        return latency_table(latency_report(endpoint_stats(table, now - span, now)))

    return view


def _latency_row(row: Report) -> list[str]:
    latency, integration = row["latency_ms"], row["integration_latency_ms"]
    return [
        row["endpoint"],
        f"{row['responses']:,}",
        _percent(row["error_rate_4xx"]),
        _percent(row["error_rate_5xx"]),
        *(_ms(latency[name]) for name in (*QUANTILES, "mean")),
        *(_ms(integration[name]) for name in QUANTILES),
    ]


def print_top(console: Console, report: Report) -> None:
    what, count = report["what"], report["count"]
    table = RichTable(title=f"Top {what} by {'calls' if what == 'users' else 'requests'} (of {count:,})")
    table.add_column("#", justify="right")
    if what == "users":
        table.add_column("user")
        for column in ("calls", "auth failures", "rate limited", "requests"):
            table.add_column(column, justify="right")
        for rank, user in enumerate(report["top"], 1):
            numbers = (user[name] for name in ("calls", "auth_failures", "rate_limited", "requests"))
            table.add_row(str(rank), user["email"], *(f"{n:,}" for n in numbers))
    else:
        table.add_column(what[:-1])
        table.add_column("requests", justify="right")
        table.add_column("share", justify="right")
        for rank, row in enumerate(report["top"], 1):
            table.add_row(str(rank), row["name"], f"{row['requests']:,}", _percent(row["share"]))
    table.caption = f"{report['requests']:,} requests, refused ones included"
    console.print(table)


def print_security(console: Console, report: Report) -> None:
    console.print(_suspicious_table(report))
    rules = "; ".join(f"{name}: {text}" for name, text in report["rule_descriptions"].items())
    console.print(f"Rules, per IP and hour: {rules}")
    console.print(_failing_ips_table(report))
    console.print(_failing_keys_table(report))
    console.print(_refusals_table(report))
    users = RichTable(title=f"Top rate-limited users (of {report['rate_limited_users']:,})")
    users.add_column("user")
    for column in ("rate limited", "calls", "auth failures"):
        users.add_column(column, justify="right")
    for user in report["top_rate_limited_users"]:
        users.add_row(user["email"], *(f"{user[n]:,}" for n in ("rate_limited", "calls", "auth_failures")))
    console.print(users)


def _suspicious_table(report: Report) -> RichTable:
    table = RichTable(title=f"Suspicious IPs per hour (of {report['suspicious_ip_hours']:,})")
    table.add_column("hour (UTC)")
    table.add_column("ip")
    table.add_column("rules broken")
    for column in ("calls", "auth failures", "rate limited", "keys tried", "users seen"):
        table.add_column(column, justify="right")
    for row in report["suspicious_ips"]:
        table.add_row(
            _hour(row["hour"]),
            row["ip"],
            ", ".join(row["rules"]),
            *(f"{row[n]:,}" for n in ("calls", "auth_failures", "rate_limited")),
            str(len(row["keys_tried"])),
            str(len(row["users_seen"])),
        )
    return table


def _failing_ips_table(report: Report) -> RichTable:
    table = RichTable(title=f"Top failing IPs (of {report['failing_ips']:,})")
    table.add_column("ip")
    for column in ("auth failures", "rate limited", "calls", "keys tried", "hours"):
        table.add_column(column, justify="right")
    table.add_column("reasons")
    for row in report["top_failing_ips"]:
        table.add_row(
            row["ip"],
            *(f"{row[n]:,}" for n in ("auth_failures", "rate_limited", "calls")),
            str(len(row["keys_tried"])),
            str(row["hours"]),
            _reasons(row["reasons"]),
        )
    return table


def _failing_keys_table(report: Report) -> RichTable:
    table = RichTable(title=f"Top failing keys (of {report['failing_keys']:,})")
    table.add_column("key id", no_wrap=True)
    for column in ("auth failures", "rate limited"):
        table.add_column(column, justify="right")
    table.add_column("reasons")
    for row in report["top_failing_keys"]:
        table.add_row(
            row["key_id"], f"{row['auth_failures']:,}", f"{row['rate_limited']:,}", _reasons(row["reasons"])
        )
    return table


def _refusals_table(report: Report) -> RichTable:
    reasons = list(report["refusals_by_reason"])
    table = RichTable(title="Refusals by reason per hour (hours without any left out)")
    table.add_column("hour (UTC)")
    for reason in reasons:
        table.add_column(reason, justify="right")
    table.add_column("total", justify="right")
    for row in report["refusals_by_hour"]:
        if row["total"]:
            counts = (row["reasons"].get(reason, 0) for reason in reasons)
            table.add_row(_hour(row["hour"]), *(f"{n:,}" for n in counts), f"{row['total']:,}")
    return table


# -- helpers -----------------------------------------------------------------------------------------


def emit(args: argparse.Namespace, report: Report, show: Callable[[Console, Report], None]) -> None:
    if args.json:
        print(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(_window_line(report["window"]))
    show(console, report)


def analytics_table(settings: ConsumerSettings) -> Table:
    return Table(aws.client("dynamodb", settings.region), settings.analytics_table)


def reading() -> AbstractContextManager[None]:
    """AWS errors of the reads as the CLI reports them (`Misconfigured`, `SinkUnavailable`)."""
    return aws.translated("reading the analytics table")


def endpoint_argument(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    method, _, route = endpoint.strip().partition(" ")
    if method not in METHODS | {OTHER} or not (route.startswith("/") or route == OTHER):
        raise usage_error(f"--endpoint {endpoint!r}: a method and a route template, e.g. 'GET /items/{{id}}'")
    return f"{method} {route.strip()}"


def _window_line(window: Report) -> str:
    """The window asked for and the whole buckets read for it."""
    asked = f"{_minute(window['from'])} to {_minute(window['to'])}"
    read = f"{_minute(window['read_from'])} to {_minute(window['read_to'])}"
    return f"Window {asked} UTC, read as {window['buckets']} {window['resolution']} items: {read}"


def _minute(stamp: str) -> str:
    return stamp[:16].replace("T", " ")


def _hour(stamp: str) -> str:
    return stamp[:13]


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _reasons(reasons: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in _ranked(reasons))


def _ranked(counts: Mapping[str, int]) -> Iterable[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
