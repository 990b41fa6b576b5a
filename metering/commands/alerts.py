"""`metering alerts`: the threshold alerts' open episodes, and those that changed recently.

One key query per rule (`ALERT#<rule>`), never a Scan. An episode is what `consumer.sinks.alerts`
keeps: FIRING until the window after its last breach has passed, then RESOLVED (docs/alerts.md).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from consumer import aws
from consumer.core.alerts import RULES
from consumer.core.events import utc_now
from consumer.settings import ConsumerSettings
from contract.table import ALERT_PREFIX
from metering.commands.usage import parse_window
from reads import Table

COLUMNS = ("rule", "subject", "state", "episode", "firstWindow", "lastWindow", "value", "threshold", "detail",
           "changedAt")  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = subparsers.add_parser("alerts", help="open alert episodes and those that changed recently")
    alerts.add_argument("--last", default="24h", help="also list episodes changed within this age (24h)")
    alerts.add_argument("--rule", choices=RULES, help="one rule only")
    alerts.add_argument("--json", action="store_true", help="print one JSON document")
    alerts.set_defaults(handler=alerts_command)


def alerts_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    since = utc_now() - parse_window(args.last)
    table = Table(aws.client("dynamodb", settings.region), settings.analytics_table)
    episodes = list_episodes(table, since, (args.rule,) if args.rule else RULES)
    if args.json:
        print(json.dumps({"since": since.isoformat(), "episodes": episodes}, default=str, sort_keys=True))
    else:
        _print(episodes, since)
    return 0


def list_episodes(table: Table, since: datetime, rules: tuple[str, ...] = RULES) -> list[dict[str, Any]]:
    """FIRING episodes, then RESOLVED ones changed since `since`; newest change first within each."""
    found = []
    for rule in rules:
        for item in table.partition(ALERT_PREFIX + rule):
            changed = datetime.fromisoformat(item["changedAt"].replace("Z", "+00:00"))
            if item["state"] == "FIRING" or changed >= since:
                found.append({"rule": rule, "subject": item["sk"]} | {k: item.get(k) for k in COLUMNS[2:]})
    found.sort(key=lambda e: e["changedAt"], reverse=True)
    found.sort(key=lambda e: e["state"] != "FIRING")
    return found


def _print(episodes: list[dict[str, Any]], since: datetime) -> None:
    table = RichTable(title=f"Alerts: open, and changed since {since:%Y-%m-%d %H:%M} UTC")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("episode", "value", "threshold") else "left")
    for episode in episodes:
        style = "bold red" if episode["state"] == "FIRING" else None
        table.add_row(*(str(episode.get(column, "")) for column in COLUMNS), style=style)
    Console().print(table if episodes else "no alerts: none open, none changed in that time")
