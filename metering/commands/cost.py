"""`metering cost`: the monthly cost of metering at a traffic volume, line by line (issue 12).

The model and its dated price table are `metering.cost`; this module parses the command line and
prints the breakdown, the consumer's writes by item kind, the design's estimate, the alternatives
and the cheapest configuration that keeps 7-day replay, as tables or (`--json`) as one document.
Options start from the recommended configuration, or from what the templates deploy today
(`--as-deployed`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from typing import Any

from rich.console import Console
from rich.table import Table

from consumer.settings import ConsumerSettings
from metering import cost
from metering.errors import usage_error

# Option -> CostInputs field, for the options that set one field as given.
_FIELDS = {
    "users": "users",
    "shards": "shards",
    "retention_days": "retention_days",
    "events_per_record": "events_per_record",
    "bytes_per_record": "bytes_per_record",
    "flush_interval": "flush_interval_seconds",
    "tasks": "fargate_tasks",
    "vcpu": "fargate_vcpu",
    "memory_gb": "fargate_gb",
    "metrics": "consumer_metrics",
    "kcl_metrics": "kcl_metrics_level",
    "index_projection": "index_projection",
    "writes_per_1000_events": "writes_per_1000_events",
}
_FLAGS = {field: "--" + option.replace("_", "-") for option, field in _FIELDS.items()} | {
    "calls_per_month": "--calls-per-month",
    "fargate_tasks": "--tasks",
}
_ARCHITECTURES = {"arm64": "arm64", "x86": "x86_64", "x86_64": "x86_64"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cost", help="monthly cost of metering at a volume, from dated prices")
    parser.add_argument("--calls-per-month", required=True, help="e.g. 10M, 250k, 1.5M or 10000000")
    parser.add_argument(
        "--as-deployed", action="store_true", help="start from what the templates deploy today"
    )
    parser.add_argument(
        "--users", type=int, help=f"active users, each calling steadily (default {cost.CostInputs().users})"
    )
    parser.add_argument("--stream-mode", choices=("provisioned", "on-demand"))
    parser.add_argument("--shards", type=int, help="provisioned shards (default: as many as the peak needs)")
    parser.add_argument("--retention-days", type=int, help="stream retention (default 7: the replay window)")
    parser.add_argument("--events-per-record", type=float, help="events per record at the peak (v1: 1)")
    parser.add_argument("--bytes-per-record", type=int, help="bytes per record at the peak (v1: 420)")
    parser.add_argument("--flush-interval", type=float, help="FLUSH_INTERVAL_SECONDS (0.2-60)")
    parser.add_argument("--tasks", type=int, help="consumer tasks")
    parser.add_argument("--vcpu", type=float, help="vCPU per consumer task")
    parser.add_argument("--memory-gb", type=float, help="memory per consumer task")
    parser.add_argument("--architecture", choices=tuple(_ARCHITECTURES), help="Fargate CPU")
    parser.add_argument("--metrics", choices=("api", "emf"), help="the consumer's CLOUDWATCH_METRICS")
    parser.add_argument("--kcl-metrics", choices=("SUMMARY", "NONE"), help="the KCL daemon's metricsLevel")
    parser.add_argument(
        "--index-projection",
        choices=("all", "keys-only"),
        help="the by-bucket index: keys-only; all: tables from before",
    )
    parser.add_argument("--writes-per-1000-events", type=float, help="replace the write model by a figure")
    parser.add_argument("--json", action="store_true", help="print the same as one JSON document")
    parser.set_defaults(handler=cost_command)


def cost_command(args: argparse.Namespace, _settings: ConsumerSettings) -> int:
    inputs = inputs_from(args)
    report = build_report(inputs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(Console(), report)
    return 0


def inputs_from(args: argparse.Namespace) -> cost.CostInputs:
    """The command line as model inputs; a value that cannot work is a usage error (exit 2)."""
    try:
        calls = cost.parse_volume(args.calls_per_month)
    except ValueError as exc:
        raise usage_error(f"--calls-per-month {exc}") from exc
    if args.shards is not None and args.stream_mode == "on-demand":
        raise usage_error("--shards applies to provisioned streams only (on-demand opens its own)")
    given: dict[str, Any] = {field: getattr(args, option) for option, field in _FIELDS.items()}
    if args.stream_mode is not None:
        given["stream_mode"] = args.stream_mode
    if args.architecture is not None:
        given["architecture"] = _ARCHITECTURES[args.architecture]
    changes = {name: value for name, value in given.items() if value is not None}
    if args.stream_mode == "on-demand":
        changes["shards"] = None  # on-demand opens its own, whatever the starting point had
    start = cost.AS_DEPLOYED if args.as_deployed else cost.CostInputs()
    inputs = replace(start, calls_per_month=calls, **changes)
    try:
        cost.validate(inputs)
    except ValueError as exc:
        name, _, why = str(exc).partition(": ")
        raise usage_error(f"{_FLAGS.get(name, name)}: {why}") from exc
    return inputs


def build_report(inputs: cost.CostInputs) -> dict[str, Any]:
    """Everything the command prints, as plain data (the `--json` document)."""
    breakdown = cost.breakdown(inputs)
    cheapest = cost.cheapest_with_replay(inputs)
    deployed = cost.breakdown(
        replace(cost.AS_DEPLOYED, calls_per_month=inputs.calls_per_month, users=inputs.users)
    )
    total = round(breakdown.total_usd, 2)
    return {
        "region": cost.REGION,
        "inputs": asdict(inputs) | {"shards": inputs.stream_shards()},
        "placeholders": {name: getattr(inputs, name) for name in cost.PLACEHOLDERS},
        "lines": [_line(line) for line in breakdown.lines],
        "by_service": _by_service(breakdown),
        "total_usd": total,
        "complete": breakdown.complete,
        "unpriced": [f"{line.service}: {line.item}" for line in breakdown.unpriced],
        "target_usd": cost.TARGET_USD,
        "meets_target": total < cost.TARGET_USD,
        "keeps_7_day_replay": breakdown.keeps_replay,
        "warnings": list(breakdown.warnings),
        "writes_per_1000_events": _writes(inputs),
        "as_deployed_usd": round(deployed.total_usd, 2),
        "design_estimate_usd": cost.DESIGN_ESTIMATE_USD,
        "alternatives": [_alternative(alt) for alt in cost.alternatives(inputs)],
        "cheapest_7_day_replay": {
            "changes": cheapest.changes,
            "total_usd": round(cheapest.breakdown.total_usd, 2),
            "meets_target": cheapest.breakdown.total_usd < cost.TARGET_USD,
            "complete": cheapest.breakdown.complete,
            "warnings": list(cheapest.breakdown.warnings),
            "not_compared": list(cheapest.skipped),
        },
        "prices": {name: asdict(price) for name, price in cost.PRICES.named().items()},
    }


def _writes(inputs: cost.CostInputs) -> dict[str, dict[str, float]]:
    """The consumer's modelled writes per 1,000 events by item kind: requests and billed units."""
    estimate = cost.writes_per_event(inputs.traffic(), inputs.index_projection)
    return {
        kind: {
            "requests": round(requests * 1000, 1),
            "table_units": round(estimate.table_units_by_kind[kind] * 1000, 1),
            "index_units": round(estimate.index_units_by_kind.get(kind, 0.0) * 1000, 1),
        }
        for kind, requests in sorted(estimate.requests_by_kind.items())
    }


def _by_service(breakdown: cost.Breakdown) -> dict[str, float | None]:
    """Each service's priced total; None for a service none of whose prices was found."""
    priced = {line.service for line in breakdown.lines if line.price.usd is not None}
    return {name: round(usd, 2) if name in priced else None for name, usd in breakdown.by_service().items()}


def _line(line: cost.Line) -> dict[str, Any]:
    usd = line.monthly_usd
    return {
        "service": line.service,
        "item": line.item,
        "quantity": line.quantity,
        "per": line.price.per,
        "unit_price_usd": line.price.usd,
        "monthly_usd": None if usd is None else round(usd, 4),
        "note": line.note,
    }


def _alternative(alt: cost.Alternative) -> dict[str, Any]:
    return {
        "name": alt.name,
        "total_usd": round(alt.total_usd, 2),
        "complete": not alt.unpriced,
        "unpriced": [
            f"{line.service}: {line.item} ({line.quantity:,.4g} x {line.price.per})" for line in alt.unpriced
        ],
        "keeps_7_day_replay": alt.keeps_replay,
        "note": alt.note,
    }


def print_report(console: Console, report: dict[str, Any]) -> None:
    inputs = report["inputs"]
    console.print(_lines_table(report))
    services = ", ".join(
        f"{name} " + ("no price found" if usd is None else f"${usd:,.2f}")
        for name, usd in report["by_service"].items()
    )
    console.print(f"By service: {services}")
    total, target, design = report["total_usd"], report["target_usd"], report["design_estimate_usd"]
    verdict = "meets it" if report["meets_target"] else f"misses it by ${total - target:,.2f}"
    console.print(
        f"[bold]Total ${total:,.2f}/month[/bold]: target ${target:,.0f}, {verdict}"
        f" (the design document estimated ${design:,.0f} at 10M calls/month;"
        f" as the templates deploy today: ${report['as_deployed_usd']:,.2f})"
    )
    if report["unpriced"]:
        console.print(f"Not in the total (no price found): {', '.join(report['unpriced'])}")
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(_writes_table(report["writes_per_1000_events"], inputs))
    console.print(_alternatives_table(report["alternatives"]))
    cheapest = report["cheapest_7_day_replay"]
    verdict = "meets" if cheapest["meets_target"] else "misses"
    changes = ", ".join(f"{name}={value}" for name, value in cheapest["changes"].items()) or "no change"
    console.print(
        f"[bold]Cheapest configuration keeping 7-day replay:[/bold] {changes}:"
        f" ${cheapest['total_usd']:,.2f}/month ({verdict} the ${report['target_usd']:,.0f} target)"
    )
    for warning in cheapest["warnings"]:
        console.print(f"  [yellow]warning:[/yellow] {warning}")
    for reason in cheapest["not_compared"]:
        console.print(f"  not compared: {reason}")
    placeholders = ", ".join(f"{name}={value}" for name, value in report["placeholders"].items())
    console.print(f"Placeholders (unmeasured inputs): {placeholders}")
    console.print(_prices_table(report["prices"]))


def _lines_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Monthly cost at {report['inputs']['calls_per_month']:,} calls ({report['region']})")
    for column in ("service", "item"):
        table.add_column(column)
    for column in ("quantity", "per", "unit price", "$/month"):
        table.add_column(column, justify="right")
    for line in report["lines"]:
        price, usd = line["unit_price_usd"], line["monthly_usd"]
        table.add_row(
            line["service"],
            line["item"] + (f" [dim]({line['note']})[/dim]" if line["note"] else ""),
            _quantity(line["quantity"]),
            line["per"],
            "not found" if price is None else _usd(price),
            "-" if usd is None else f"{usd:,.2f}",
        )
    return table


def _writes_table(writes: dict[str, dict[str, float]], inputs: dict[str, Any]) -> Table:
    table = Table(
        title=f"Consumer writes per 1,000 events (model: {inputs['users']:,} users,"
        f" flush {inputs['flush_interval_seconds']:g} s, {inputs['shards']} shard(s);"
        " bench/writes.py checks it)"
    )
    table.add_column("item kind")
    for column in ("requests", "table units", "index units"):
        table.add_column(column, justify="right")
    for kind, figures in writes.items():
        table.add_row(kind, *(f"{figures[name]:,.1f}" for name in ("requests", "table_units", "index_units")))
    totals = [
        sum(figures[name] for figures in writes.values())
        for name in ("requests", "table_units", "index_units")
    ]
    table.add_row("[bold]total[/bold]", *(f"[bold]{value:,.1f}[/bold]" for value in totals))
    return table


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.4g}"


def _usd(value: float) -> str:
    return "$" + f"{value:.8f}".rstrip("0").rstrip(".")


def _alternatives_table(alternatives: list[dict[str, Any]]) -> Table:
    table = Table(title="Alternatives at the same volume")
    table.add_column("design")
    table.add_column("$/month", justify="right")
    table.add_column("7-day replay")
    table.add_column("notes")
    for alt in alternatives:
        total = f"{alt['total_usd']:,.2f}" + ("" if alt["complete"] else " + unpriced")
        notes = alt["note"] + "".join(f"; no price: {item}" for item in alt["unpriced"])
        table.add_row(alt["name"], total, "yes" if alt["keeps_7_day_replay"] else "no", notes)
    return table


def _prices_table(prices: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=f"Prices ({cost.REGION})")
    for column in ("price", "usd", "per"):
        table.add_column(column, justify="right" if column == "usd" else "left")
    table.add_column("source", overflow="fold")  # a URL is only useful whole
    table.add_column("read")
    table.add_column("how", overflow="fold")
    for name, price in prices.items():
        usd = "not found" if price["usd"] is None else _usd(price["usd"])
        table.add_row(name, usd, price["per"], price["source"], price["as_of"], price["note"])
    return table
