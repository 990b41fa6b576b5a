"""`metering usage`: per-minute counts from the analytics table, as readable tables.

Global counts come from the `GLOBAL` items; per-user counts from the `by-bucket` index (every
item of one minute), or from one user's own items with `--user`.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from consumer import aws
from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from contract.events import canonical_email
from contract.table import BUCKET_INDEX, COUNTERS, minute_sk, read_counters, user_pk
from metering.errors import usage_error

_WINDOW = re.compile(r"^(\d+)([mh])$")
TOP_USERS = 15


def parse_window(text: str) -> timedelta:
    match = _WINDOW.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise MeteringError(f"--last {text!r}: use minutes or hours, e.g. 15m or 2h")
    amount = int(match.group(1))
    return timedelta(minutes=amount) if match.group(2) == "m" else timedelta(hours=amount)


def show_usage(settings: ConsumerSettings, *, user: str | None, last: str, watch: float = 0) -> None:
    window = parse_window(last)
    if window > timedelta(hours=24):
        raise MeteringError("--last: at most 24h of minutes (older minutes expire after 7 days)")
    client = aws.client("dynamodb", settings.region)
    console = Console()
    if not watch or not console.is_terminal:
        # Piped (`demo | tee`, a log file), a live view would only print its last frame: print each.
        while True:
            console.print(render(client, settings.analytics_table, user, window, datetime.now(UTC)))
            if not watch:
                return
            time.sleep(watch)
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(
                render(client, settings.analytics_table, user, window, datetime.now(UTC)), refresh=True
            )
            time.sleep(watch)


def render(client: Any, table: str, user: str | None, window: timedelta, now: datetime) -> Group:
    minutes = _minutes(now, window)
    if user is not None:
        try:
            key = user_pk(canonical_email(user))
        except ValueError as exc:
            raise usage_error(f"--user: {exc}") from exc
        rows = _query_range(client, table, key, minutes[0], minutes[-1])
        return Group(_minute_table(f"{user}, per minute", minutes, rows))
    global_rows = _query_range(client, table, "GLOBAL", minutes[0], minutes[-1])
    per_user = _users_in(client, table, minutes)
    return Group(_minute_table("All users, per minute (UTC)", minutes, global_rows), _user_table(per_user))


def _minutes(now: datetime, window: timedelta) -> list[str]:
    count = max(1, int(window.total_seconds() // 60))
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=count - 1)
    return [minute_sk(start + timedelta(minutes=i)) for i in range(count)]


def _query_range(client: Any, table: str, pk: str, first: str, last: str) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = {}
    for item in _pages(
        client,
        TableName=table,
        KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
        ExpressionAttributeValues={":pk": {"S": pk}, ":first": {"S": first}, ":last": {"S": last}},
    ):
        rows[item["sk"]["S"]] = read_counters(item)
    return rows


def _users_in(client: Any, table: str, minutes: list[str]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for minute in minutes:
        for item in _pages(
            client,
            TableName=table,
            IndexName=BUCKET_INDEX,
            KeyConditionExpression="#b = :b AND begins_with(pk, :user)",
            ExpressionAttributeNames={"#b": "bucket"},
            ExpressionAttributeValues={":b": {"S": minute}, ":user": {"S": "USER#"}},
        ):
            email = item["pk"]["S"].removeprefix("USER#")
            for name, value in read_counters(item).items():
                totals[email][name] += value
    return dict(totals)


def _pages(client: Any, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("query").paginate(**query):
        items.extend(page["Items"])
    return items


def _minute_table(title: str, minutes: list[str], rows: dict[str, dict[str, int]]) -> Table:
    table = Table(title=title)
    table.add_column("minute")
    for name in COUNTERS:
        table.add_column(name, justify="right")
    for minute in minutes:
        counts = rows.get(minute, dict.fromkeys(COUNTERS, 0))
        table.add_row(minute.removeprefix("MINUTE#"), *(f"{counts[n]:,}" for n in COUNTERS))
    return table


def _user_table(per_user: dict[str, dict[str, int]]) -> Table:
    table = Table(title=f"Top users in the window (of {len(per_user)})")
    table.add_column("user")
    for name in COUNTERS:
        table.add_column(name, justify="right")
    ranked = sorted(per_user.items(), key=lambda kv: -sum(kv[1].values()))[:TOP_USERS]
    for email, counts in ranked:
        table.add_row(email, *(f"{counts[n]:,}" for n in COUNTERS))
    return table
