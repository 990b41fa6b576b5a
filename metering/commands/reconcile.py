"""`metering reconcile`: API Gateway's access logs against the usage events, per hour and endpoint.

The comparison is `reads.completeness` (docs/completeness.md). Beside it, per hour and where
CloudWatch has them: what the authorizer's producer itself reports lost (`EventsFailed`,
`EventsDropped`) and API Gateway's own `Count` of the stage, a third record of the requests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from consumer import aws
from consumer.core.events import utc_now
from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from contract.cloudwatch import ENVIRONMENT, NAMESPACE
from contract.environment import api_name
from contract.events import format_timestamp
from contract.table import hour_sk
from metering.commands.analytics import (
    analytics_table,
    emit,
    endpoint_argument,
    reading,
    window_arguments,
    window_of,
)
from reads.completeness import BEFORE_AUTHORIZER, Completeness, HourTotal, Reconciliation, reconcile

Report = dict[str, Any]
PRODUCER_LOSSES = ("EventsFailed", "EventsDropped")
_HOUR = timedelta(hours=1)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reconcile", help="access-log requests against usage events, per hour and endpoint: what was lost"
    )
    parser.add_argument("--endpoint", help="one endpoint: a method and a route, e.g. 'GET /items/{id}'")
    window_arguments(parser, "24h")
    parser.set_defaults(handler=reconcile_command)


def reconcile_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    now = utc_now()
    start, end = window_of(args, now)
    endpoint = endpoint_argument(args.endpoint)
    with reading():
        found = reconcile(analytics_table(settings), start, end, endpoint=endpoint)
    try:
        with aws.translated("reading CloudWatch"):
            client = aws.client("cloudwatch", settings.region)
            cloudwatch = _cloudwatch_hours(client, settings.environment, found)
    except MeteringError as exc:  # the third record is a bonus: the table's two still compare
        print(f"metering: CloudWatch columns left empty: {exc}", file=sys.stderr)
        cloudwatch = {}
    settled = now - timedelta(seconds=settings.reconcile_after_seconds)
    emit(args, reconcile_report(found, start, end, cloudwatch, settled), print_reconciliation)
    return 0


def reconcile_report(
    found: Reconciliation,
    start: datetime,
    end: datetime,
    cloudwatch: Mapping[str, Mapping[str, int]],
    settled: datetime,
) -> Report:
    """`settled`: hours ending by then are final (RECONCILE_AFTER_SECONDS); later ones may still
    have lines on their way, and stay out of the window's `unmetered`."""
    hours = [
        _hour(total, total.hour + _HOUR <= settled, cloudwatch.get(hour_sk(total.hour), {}))
        for total in found.totals
    ]
    return {
        "window": {
            "from": format_timestamp(start),
            "to": format_timestamp(end),
            "resolution": "hour",
            "read_from": format_timestamp(found.hours[0]),
            "read_to": format_timestamp(found.hours[-1] + _HOUR),
            "buckets": len(found.hours),
        },
        "hours": hours,
        "endpoints": [_row(row) for row in found.rows],
        "unmetered": sum(hour["unmetered"] for hour in hours if hour["final"]),
    }


def _hour(total: HourTotal, final: bool, cloudwatch: Mapping[str, int]) -> Report:
    return {
        "hour": format_timestamp(total.hour),
        "final": final,
        "requests": total.requests,
        "metered": total.metered,
        "before_authorizer": total.explained,
        "authorizer_failed": total.authorizer_failed,
        "unmetered": total.unmetered,
        "unlogged": total.unlogged,
        "completeness": total.ratio,
        "cloudwatch": dict(cloudwatch),
    }


def _row(row: Completeness) -> Report:
    return {
        "hour": format_timestamp(row.hour),
        "endpoint": row.endpoint,
        "requests": row.requests,
        "metered": row.metered,
        "before_authorizer": dict(row.before_authorizer),
        "authorizer_failed": row.authorizer_failed,
        "unmetered": row.unmetered,
        "completeness": row.ratio,
    }


def _cloudwatch_hours(cloudwatch: Any, environment: str, found: Reconciliation) -> dict[str, dict[str, int]]:
    """Per hour: the producer's losses and API Gateway's `Count`, where CloudWatch has datapoints."""
    start, end = found.hours[0], found.hours[-1] + _HOUR
    ours = [{"Name": ENVIRONMENT, "Value": environment}]
    gateway = [{"Name": "ApiName", "Value": api_name(environment)}, {"Name": "Stage", "Value": environment}]
    queries = [(NAMESPACE, name, ours) for name in PRODUCER_LOSSES] + [("AWS/ApiGateway", "Count", gateway)]
    hours: dict[str, dict[str, int]] = {}
    for namespace, name, dimensions in queries:
        reply = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=dimensions,
            StartTime=start,
            EndTime=end,
            Period=3600,
            Statistics=["Sum"],
        )
        for point in reply.get("Datapoints", []):
            hours.setdefault(hour_sk(point["Timestamp"]), {})[name] = int(point["Sum"])
    return hours


# -- the tables ---------------------------------------------------------------------------------------


def print_reconciliation(console: Console, report: Report) -> None:
    console.print(_hours_table(report["hours"]))
    if report["endpoints"]:
        console.print(_endpoints_table(report["endpoints"]))
    kinds = ", ".join(f"{kind}: {meaning}" for kind, meaning in BEFORE_AUTHORIZER.items())
    console.print(f"Answered before the authorizer ran, so never metered: {kinds}.")
    console.print(f"Unmetered in the window's final hours: [bold]{report['unmetered']:,}[/bold]")


def _hours_table(rows: list[Report]) -> RichTable:
    table = RichTable(title="Completeness per hour (* not final yet: lines may still arrive)")
    table.add_column("hour (UTC)")
    for column in ("requests", "metered", "before authorizer", "authorizer failed", "unmetered"):
        table.add_column(column, justify="right")
    for column in ("events without line", "complete", "producer failed", "producer dropped", "API GW Count"):
        table.add_column(column, justify="right")
    for row in rows:
        seen = row["cloudwatch"]
        table.add_row(
            _when(row["hour"]) + ("" if row["final"] else " *"),
            *(f"{row[name]:,}" for name in ("requests", "metered", "before_authorizer", "authorizer_failed")),
            _unmetered(row["unmetered"]),
            f"{row['unlogged']:,}",
            _ratio(row["completeness"]),
            *(_number(seen.get(name)) for name in (*PRODUCER_LOSSES, "Count")),
        )
    return table


def _endpoints_table(rows: list[Report]) -> RichTable:
    table = RichTable(title="Per hour and endpoint (unmetered below 0: events whose line has not arrived)")
    table.add_column("hour (UTC)")
    table.add_column("endpoint")
    for column in ("requests", "metered", "before authorizer", "authorizer failed", "unmetered", "complete"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            _when(row["hour"]),
            row["endpoint"],
            f"{row['requests']:,}",
            f"{row['metered']:,}",
            f"{sum(row['before_authorizer'].values()):,}",
            f"{row['authorizer_failed']:,}",
            _unmetered(row["unmetered"]),
            _ratio(row["completeness"]),
        )
    return table


def _when(stamp: str) -> str:
    return stamp[:13].replace("T", " ")


def _unmetered(count: int) -> str:
    return f"[red]{count:,}[/red]" if count > 0 else f"{count:,}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4%}"


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
