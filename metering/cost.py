"""The monthly cost of metering, from a dated price table (us-east-1): `metering cost` prints it.

Pure: no AWS client. `breakdown(inputs)` prices one configuration line by line; `alternatives()`
prices the designs we did not build; `cheapest_with_replay()` searches the few discrete knobs for
the cheapest configuration that still keeps 7 days of stream for `metering replay`.

Every price names the page it comes from and the date it was read. A price we could not find on an
AWS pricing page is `None`: its line keeps its quantity, costs nothing in the total, and the total
says it is incomplete. Inputs marked PLACEHOLDER are guesses until measured; the writes per event
are one named constant, `WRITES_PER_1000_EVENTS`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Literal

StreamMode = Literal["provisioned", "on-demand"]
Architecture = Literal["x86_64", "arm64"]
Publishing = Literal["putmetricdata", "emf"]

REGION = "us-east-1"
HOURS_PER_MONTH = 730  # AWS's own convention: 8,760 hours a year / 12
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GIB = 2**30
KIB = 2**10

TARGET_USD = 75.0  # issue 12: every feature at 10M calls/month under $75
DESIGN_ESTIMATE_USD = 90.0  # the design document's estimate for 10M calls/month (no consumer fleet)
REPLAY_DAYS = 7  # `metering replay` rebuilds any window the stream still holds

# PLACEHOLDER, to be replaced by measured figures: billed DynamoDB write units (table and by-bucket
# index, ReturnConsumedCapacity=TOTAL) per 1,000 events, at 10M calls/month with 5 s flushes. It
# depends on traffic shape (events per user per minute) and on FLUSH_INTERVAL_SECONDS.
WRITES_PER_1000_EVENTS = 250.0

# ---------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------

READ_ON = "2026-11-30"
FIELD_NOTES = "as recorded in ../shared/notes/kcl-field-notes.md 'Prices'"
NOT_FOUND = "not found on an AWS pricing page with the search tools on 2026-11-30"

KINESIS_PAGE = "https://aws.amazon.com/kinesis/data-streams/pricing/"
DYNAMODB_PAGE = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
FARGATE_PAGE = "https://aws.amazon.com/fargate/pricing/"
LAMBDA_PAGE = "https://aws.amazon.com/lambda/pricing/"
CLOUDWATCH_PAGE = "https://aws.amazon.com/cloudwatch/pricing/"
CLOUDFRONT_PAGE = "https://aws.amazon.com/cloudfront/pricing/"
SQS_PAGE = "https://aws.amazon.com/sqs/pricing/"
SNS_PAGE = "https://aws.amazon.com/sns/pricing/"


@dataclass(frozen=True, slots=True)
class Price:
    usd: float | None  # None: not found on an AWS pricing page, so not invented
    per: str  # the unit a line's quantity is counted in
    source: str
    as_of: str = READ_ON
    note: str = FIELD_NOTES


@dataclass(frozen=True, slots=True)
class PriceTable:
    kinesis_shard_hour: Price = Price(0.015, "shard-hour", KINESIS_PAGE)
    kinesis_put_units: Price = Price(0.014, "1M PUT payload units", KINESIS_PAGE)
    kinesis_extended_retention: Price = Price(0.020, "shard-hour", KINESIS_PAGE)
    kinesis_long_term_retention: Price = Price(None, "GB-month", KINESIS_PAGE, note=NOT_FOUND)
    kinesis_on_demand_stream_hour: Price = Price(None, "stream-hour", KINESIS_PAGE, note=NOT_FOUND)
    kinesis_on_demand_data_in: Price = Price(None, "GB", KINESIS_PAGE, note=NOT_FOUND)
    kinesis_on_demand_data_out: Price = Price(None, "GB", KINESIS_PAGE, note=NOT_FOUND)
    kinesis_on_demand_retention: Price = Price(None, "GB-month", KINESIS_PAGE, note=NOT_FOUND)
    dynamodb_writes: Price = Price(0.625, "1M write units", DYNAMODB_PAGE)
    dynamodb_reads: Price = Price(0.125, "1M read units", DYNAMODB_PAGE)
    dynamodb_storage: Price = Price(0.25, "GB-month", DYNAMODB_PAGE)
    dynamodb_pitr: Price = Price(None, "GB-month", DYNAMODB_PAGE, note=NOT_FOUND)
    fargate_vcpu_x86: Price = Price(0.04048, "vCPU-hour", FARGATE_PAGE)
    fargate_gb_x86: Price = Price(0.004445, "GB-hour", FARGATE_PAGE)
    fargate_vcpu_arm: Price = Price(0.03238, "vCPU-hour", FARGATE_PAGE)
    fargate_gb_arm: Price = Price(0.00356, "GB-hour", FARGATE_PAGE)
    lambda_requests: Price = Price(0.20, "1M requests", LAMBDA_PAGE)
    lambda_duration_x86: Price = Price(
        0.00001667,
        "GB-second",
        LAMBDA_PAGE,
        note="quoted in the page's US East example ('$0.00001667 per GB-s'), stored copy read 2026-11-30;"
        " also https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html",
    )
    lambda_edge_requests: Price = Price(None, "1M requests", CLOUDFRONT_PAGE, note=NOT_FOUND)
    lambda_edge_duration: Price = Price(None, "GB-second", CLOUDFRONT_PAGE, note=NOT_FOUND)
    cloudwatch_metric: Price = Price(0.30, "metric-month", CLOUDWATCH_PAGE)
    cloudwatch_put_metric_data: Price = Price(0.01, "1,000 requests", CLOUDWATCH_PAGE)
    cloudwatch_alarm: Price = Price(0.10, "alarm-month", CLOUDWATCH_PAGE)
    cloudwatch_dashboard: Price = Price(3.00, "dashboard-month", CLOUDWATCH_PAGE)
    cloudwatch_logs_ingestion: Price = Price(0.50, "GB", CLOUDWATCH_PAGE)
    sqs_requests: Price = Price(None, "1M requests", SQS_PAGE, note=NOT_FOUND)
    sns_publishes: Price = Price(None, "1M publishes", SNS_PAGE, note=NOT_FOUND)

    def named(self) -> dict[str, Price]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


PRICES = PriceTable()

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

# Fargate task sizes (vCPU, GB) the search may pick; Fargate allows these pairs among others.
TASK_SIZES: tuple[tuple[float, float], ...] = (
    (0.25, 1.0),
    (0.25, 2.0),
    (0.5, 1.0),
    (0.5, 2.0),
    (1.0, 2.0),
    (2.0, 4.0),
)
MEASURED_TASK_SIZE = (1.0, 2.0)  # ecs/consumer.yaml: the only size the consumer has run at
# PLACEHOLDER floor, unmeasured: the KCL's JVM plus one Python child per shard must fit.
MIN_TASK_GB = 1.0
# Field notes: the whole processor ran at 0.46-0.67 x ~53k records/s on one core; the low end.
EVENTS_PER_VCPU_SECOND = 24_000.0
CPU_HEADROOM = 4.0  # PLACEHOLDER: JVM, polling, GC and catching up after an outage

PUT_PAYLOAD_UNIT_BYTES = 25 * KIB  # Kinesis provisioned bills PUTs per 25 KB of a record
ON_DEMAND_ROUNDING_BYTES = KIB  # on-demand bills each record rounded up to 1 KB (pricing page)
SHARD_RECORDS_PER_SECOND = 1_000  # per-shard write quota (field notes)
SHARD_BYTES_PER_SECOND = 2**20
MAX_RECORD_BYTES = 2**20  # a Kinesis record's data (1 MiB)
DYNAMODB_ITEM_OVERHEAD_BYTES = 100  # DynamoDB adds 100 bytes per item to the billed storage
KCL_LEASE_EPSILON_SECONDS = 0.025  # the KCL renews every failover/3 - epsilon (CommonCalculations)
KCL_METRICS_BUFFER_SECONDS = 10.0  # the KCL flushes its CloudWatch metrics every 10 s ...
KCL_DATUMS_PER_CALL = 20  # ... at most 20 datums per PutMetricData (CloudWatchMetricsPublisher)


@dataclass(frozen=True, slots=True)
class CostInputs:
    calls_per_month: int = 10_000_000
    users: int = 100  # PLACEHOLDER: active users (key reads, stored items)
    # The peak the stream must take without refusing: the stage's ThrottlingRateLimit
    # (ecs/api-gateway.yaml), since API Gateway admits that much before any authorizer runs.
    peak_calls_per_second: float = 2_000.0
    # Kinesis
    stream_mode: StreamMode = "provisioned"
    shards: int = 2  # ecs/consumer.yaml
    retention_days: int = 7  # ecs/consumer.yaml: RetentionPeriodHours 168, the replay window
    events_per_record: int = 1  # usage event v1: one event per record
    event_bytes: int = 400
    # Fargate (the KCL consumer)
    fargate_tasks: int = 1
    fargate_vcpu: float = 1.0
    fargate_gb: float = 2.0
    architecture: Architecture = "x86_64"  # ecs/consumer.yaml CpuArchitecture default
    flush_interval_seconds: float = 5.0  # FLUSH_INTERVAL_SECONDS: one checkpoint per shard per flush
    kcl_failover_seconds: float = 10.0  # properties: failoverTimeMillis
    # DynamoDB
    writes_per_1000_events: float = WRITES_PER_1000_EVENTS
    item_bytes: int = 300  # PLACEHOLDER: an analytics item with its counters and watermarks
    analytics_reads_per_month: int = 1_000_000  # PLACEHOLDER: `metering usage`, billing exports
    key_cache_seconds: float = 30.0  # KEY_CACHE_TTL_SECONDS
    last_used_every_seconds: float = 300.0  # last-used written at most once per 5 min per key
    warm_containers: int = 2  # PLACEHOLDER: authorizer containers kept warm
    # Lambda authorizer
    authorizer_ms: float = 5.0
    authorizer_mb: int = 512
    # CloudWatch
    kcl_metrics: int = 25  # PLACEHOLDER: the KCL's SUMMARY metrics (count them with ListMetrics)
    app_metrics: int = 5  # PLACEHOLDER: the authorizer's and the consumer's own
    publishing: Publishing = "emf"  # authorizer/metrics.py: the Lambda publishes EMF
    emf_lines_per_call: float = 1.0  # PLACEHOLDER: one EMF line per invocation at worst
    emf_bytes_per_line: int = 250  # PLACEHOLDER
    log_bytes_per_call: int = 300  # PLACEHOLDER: Lambda's START/END/REPORT lines per invocation
    other_log_gb: float = 1.0  # PLACEHOLDER: consumer and KCL daemon logs per month
    alarms: int = 12
    dashboards: int = 1
    # SQS / SNS
    dead_letters_per_month: int = 1_000  # PLACEHOLDER
    alarm_notifications_per_month: int = 100  # PLACEHOLDER
    # Alternatives
    direct_items_per_call: int = 5  # TOTAL, user minute, user hour, GLOBAL minute/hour, IP hour
    direct_index_writes_per_call: int = 4  # the by-bucket index copies every item with a bucket
    direct_authorizer_ms: float = 10.0  # PLACEHOLDER: the authorizer waiting for its writes
    edge_mb: int = 128  # Lambda@Edge viewer triggers allow 128 MB


PLACEHOLDERS = (
    "writes_per_1000_events",
    "users",
    "item_bytes",
    "analytics_reads_per_month",
    "warm_containers",
    "kcl_metrics",
    "app_metrics",
    "emf_lines_per_call",
    "emf_bytes_per_line",
    "log_bytes_per_call",
    "other_log_gb",
    "dead_letters_per_month",
    "alarm_notifications_per_month",
    "direct_authorizer_ms",
)


def validate(inputs: CostInputs) -> None:
    """Raise ValueError('<input>: why') for the first input that cannot describe a deployment."""
    checks = (
        (inputs.calls_per_month > 0, "calls_per_month", "must be positive"),
        (inputs.users > 0, "users", "must be positive"),
        (inputs.shards >= 1, "shards", "must be at least 1"),
        (1 <= inputs.retention_days <= 365, "retention_days", "must be between 1 and 365"),
        (inputs.events_per_record >= 1, "events_per_record", "must be at least 1"),
        (
            inputs.events_per_record * inputs.event_bytes <= MAX_RECORD_BYTES,
            "events_per_record",
            f"a 1 MiB record holds at most {MAX_RECORD_BYTES // inputs.event_bytes} events of"
            f" {inputs.event_bytes} B",
        ),
        (inputs.fargate_tasks >= 1, "fargate_tasks", "must be at least 1"),
        (inputs.writes_per_1000_events >= 0, "writes_per_1000_events", "cannot be negative"),
    )
    for ok, name, message in checks:
        if not ok:
            raise ValueError(f"{name}: {message}")


_VOLUME = re.compile(r"^(\d+(?:\.\d+)?)([kKmMbB]?)$")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_volume(text: str) -> int:
    """'10M', '250k', '1.5M', '2B' or a plain integer ('10_000_000', '10,000,000') -> calls."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    match = _VOLUME.match(cleaned)
    if not match:
        raise ValueError(f"{text!r}: use a number with an optional k, M or B suffix, e.g. 10M or 250k")
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number of calls")
    if value <= 0:
        raise ValueError(f"{text!r}: calls per month must be positive")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Breakdown
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    service: str
    item: str
    quantity: float  # counted in price.per
    price: Price
    note: str = ""

    @property
    def monthly_usd(self) -> float | None:
        return None if self.price.usd is None else self.quantity * self.price.usd


@dataclass(frozen=True, slots=True)
class Breakdown:
    inputs: CostInputs
    lines: tuple[Line, ...]
    warnings: tuple[str, ...] = ()

    @property
    def total_usd(self) -> float:
        """The priced lines only; `unpriced` lists what is left out."""
        return sum(line.monthly_usd or 0.0 for line in self.lines)

    @property
    def unpriced(self) -> tuple[Line, ...]:
        return tuple(line for line in self.lines if line.price.usd is None)

    @property
    def complete(self) -> bool:
        return not self.unpriced

    @property
    def keeps_replay(self) -> bool:
        return self.inputs.retention_days >= REPLAY_DAYS

    def by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.service] = totals.get(line.service, 0.0) + (line.monthly_usd or 0.0)
        return totals


def records_per_month(i: CostInputs) -> int:
    return math.ceil(i.calls_per_month / i.events_per_record)  # the producer packs events in records


def shards_needed(i: CostInputs) -> int:
    """Shards whose write quota (records/s and bytes/s) takes the peak the stage admits."""
    records = i.peak_calls_per_second / i.events_per_record
    return max(
        1,
        math.ceil(records / SHARD_RECORDS_PER_SECOND),
        math.ceil(i.peak_calls_per_second * i.event_bytes / SHARD_BYTES_PER_SECOND),
    )


def kinesis_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    records = records_per_month(i)
    record_bytes = i.events_per_record * i.event_bytes
    daily_gb = i.calls_per_month * i.event_bytes / GIB / (HOURS_PER_MONTH / 24)
    if i.stream_mode == "provisioned":
        lines = [
            Line("Kinesis", f"{i.shards} shards", i.shards * HOURS_PER_MONTH, p.kinesis_shard_hour),
            Line(
                "Kinesis",
                f"PUT payload units ({records:,} records of {record_bytes:,} B)",
                records * math.ceil(record_bytes / PUT_PAYLOAD_UNIT_BYTES) / 1e6,
                p.kinesis_put_units,
            ),
        ]
        if i.retention_days > 1:  # 24 h is included; up to 7 days bills every shard-hour
            lines.append(
                Line(
                    "Kinesis",
                    "extended retention (to 7 d)",
                    i.shards * HOURS_PER_MONTH,
                    p.kinesis_extended_retention,
                )
            )
    else:
        data_in_gb = records * math.ceil(record_bytes / ON_DEMAND_ROUNDING_BYTES) * KIB / GIB
        lines = [
            Line("Kinesis", "on-demand stream", HOURS_PER_MONTH, p.kinesis_on_demand_stream_hour),
            Line("Kinesis", "data in (records rounded up to 1 KB)", data_in_gb, p.kinesis_on_demand_data_in),
            Line(
                "Kinesis",
                "data out (one consumer)",
                records * record_bytes / GIB,
                p.kinesis_on_demand_data_out,
            ),
        ]
        if i.retention_days > 1:  # data held beyond the first 24 h, up to 7 days
            held_gb = daily_gb * (min(i.retention_days, REPLAY_DAYS) - 1)
            lines.append(
                Line("Kinesis", "extended retention (to 7 d)", held_gb, p.kinesis_on_demand_retention)
            )
    if i.retention_days > REPLAY_DAYS:  # data held beyond 7 days, both modes
        held_gb = daily_gb * (i.retention_days - REPLAY_DAYS)
        lines.append(Line("Kinesis", "long-term retention (> 7 d)", held_gb, p.kinesis_long_term_retention))
    return lines


def fargate_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    vcpu, gb = (
        (p.fargate_vcpu_arm, p.fargate_gb_arm)
        if i.architecture == "arm64"
        else (p.fargate_vcpu_x86, p.fargate_gb_x86)
    )
    size = f"{i.fargate_tasks} x {i.fargate_vcpu:g} vCPU / {i.fargate_gb:g} GB {i.architecture}"
    return [
        Line("Fargate", f"vCPU ({size})", i.fargate_tasks * i.fargate_vcpu * HOURS_PER_MONTH, vcpu),
        Line("Fargate", f"memory ({size})", i.fargate_tasks * i.fargate_gb * HOURS_PER_MONTH, gb),
    ]


def consumer_dynamodb_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    """What the consumer writes: counts (measured per event) and the KCL's own bookkeeping."""
    renew_seconds = i.kcl_failover_seconds / 3 - KCL_LEASE_EPSILON_SECONDS
    kcl_writes = i.shards * SECONDS_PER_MONTH * (1 / i.flush_interval_seconds + 1 / renew_seconds)
    return [
        Line(
            "DynamoDB",
            f"analytics writes ({i.writes_per_1000_events:g} per 1,000 events)",
            i.calls_per_month * i.writes_per_1000_events / 1000 / 1e6,
            p.dynamodb_writes,
            "PLACEHOLDER until measured" if i.writes_per_1000_events == WRITES_PER_1000_EVENTS else "",
        ),
        Line("DynamoDB", "KCL checkpoints and lease renewals", kcl_writes / 1e6, p.dynamodb_writes),
    ]


def shared_dynamodb_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    """What every design pays: the authorizer's own tables, reads of the counts, and storage."""
    per_key_windows = i.users * i.warm_containers * SECONDS_PER_MONTH  # a key's cache is per container
    key_reads = min(i.calls_per_month, per_key_windows / i.key_cache_seconds)
    last_used = min(i.calls_per_month, per_key_windows / i.last_used_every_seconds)
    return [
        Line("DynamoDB", "rate-limit UpdateItem (one per call)", i.calls_per_month / 1e6, p.dynamodb_writes),
        Line("DynamoDB", "key reads (strongly consistent, cached 30 s)", key_reads / 1e6, p.dynamodb_reads),
        Line("DynamoDB", "key last-used writes", last_used / 1e6, p.dynamodb_writes),
        Line("DynamoDB", "analytics reads", i.analytics_reads_per_month / 1e6, p.dynamodb_reads),
        Line("DynamoDB", f"storage ({items_kept(i):,} items)", storage_gb(i), p.dynamodb_storage),
        Line("DynamoDB", "point-in-time recovery", storage_gb(i), p.dynamodb_pitr),
    ]


def items_kept(i: CostInputs) -> int:
    """Items alive at once: minute and hour buckets expire after 7 days (TTL), TOTAL stays."""
    minutes, hours = REPLAY_DAYS * 24 * 60, REPLAY_DAYS * 24
    per_user_week = i.calls_per_month * REPLAY_DAYS * 24 / HOURS_PER_MONTH / i.users
    per_user = 1 + min(per_user_week, minutes) + min(per_user_week, hours)  # TOTAL, minutes, hours
    per_ip = min(per_user_week, hours)  # one address per user, hourly items
    return math.ceil(minutes + hours + i.users * (per_user + per_ip))  # + GLOBAL minutes and hours


def storage_gb(i: CostInputs) -> float:
    """Every item twice: the by-bucket index projects ALL attributes."""
    return items_kept(i) * (i.item_bytes + DYNAMODB_ITEM_OVERHEAD_BYTES) * 2 / GIB


def authorizer_lines(
    i: CostInputs, p: PriceTable, *, edge: bool = False, ms: float | None = None
) -> list[Line]:
    ms = i.authorizer_ms if ms is None else ms
    mb = i.edge_mb if edge else i.authorizer_mb
    requests, duration = (
        (p.lambda_edge_requests, p.lambda_edge_duration)
        if edge
        else (p.lambda_requests, p.lambda_duration_x86)
    )
    name = "Lambda@Edge" if edge else "Lambda"
    return [
        Line(name, "invocations (one per call: cache TTL 0)", i.calls_per_month / 1e6, requests),
        Line(name, f"duration ({ms:g} ms at {mb} MB)", i.calls_per_month * ms / 1000 * mb / 1024, duration),
    ]


def cloudwatch_lines(i: CostInputs, p: PriceTable, *, consumer: bool = True) -> list[Line]:
    kcl_metrics = i.kcl_metrics if consumer else 0
    lines = [
        Line(
            "CloudWatch",
            f"custom metrics ({kcl_metrics} KCL + {i.app_metrics} ours)",
            kcl_metrics + i.app_metrics,
            p.cloudwatch_metric,
        ),
    ]
    if consumer:  # the KCL publishes its own metrics with PutMetricData, whatever we choose
        calls = (
            i.fargate_tasks
            * SECONDS_PER_MONTH
            / KCL_METRICS_BUFFER_SECONDS
            * math.ceil(kcl_metrics / KCL_DATUMS_PER_CALL)
        )
        lines.append(
            Line("CloudWatch", "KCL PutMetricData calls", calls / 1000, p.cloudwatch_put_metric_data)
        )
    if i.publishing == "putmetricdata":  # one call per invocation: Lambda freezes after returning
        lines.append(
            Line(
                "CloudWatch",
                "authorizer PutMetricData calls",
                i.calls_per_month / 1000,
                p.cloudwatch_put_metric_data,
            )
        )
    else:
        emf_gb = i.calls_per_month * i.emf_lines_per_call * i.emf_bytes_per_line / GIB
        lines.append(
            Line(
                "CloudWatch",
                f"authorizer EMF log lines ({i.emf_bytes_per_line} B)",
                emf_gb,
                p.cloudwatch_logs_ingestion,
            )
        )
    lines += [
        Line("CloudWatch", "alarms", i.alarms, p.cloudwatch_alarm),
        Line("CloudWatch", "dashboards", i.dashboards, p.cloudwatch_dashboard),
        Line(
            "CloudWatch",
            "authorizer log lines per invocation",
            i.calls_per_month * i.log_bytes_per_call / GIB,
            p.cloudwatch_logs_ingestion,
        ),
    ]
    if consumer:
        lines.append(
            Line("CloudWatch", "consumer and KCL daemon logs", i.other_log_gb, p.cloudwatch_logs_ingestion)
        )
    return lines


def messaging_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    # A dead letter costs a send, and a receive and a delete when it is listed or re-driven.
    return [
        Line("SQS", "dead-letter requests", i.dead_letters_per_month * 3 / 1e6, p.sqs_requests),
        Line("SNS", "alarm notifications", i.alarm_notifications_per_month / 1e6, p.sns_publishes),
    ]


def breakdown(inputs: CostInputs, prices: PriceTable = PRICES) -> Breakdown:
    """The monthly cost of the design as built: authorizer -> Kinesis -> KCL consumer -> DynamoDB."""
    validate(inputs)
    lines = [
        *kinesis_lines(inputs, prices),
        *fargate_lines(inputs, prices),
        *consumer_dynamodb_lines(inputs, prices),
        *shared_dynamodb_lines(inputs, prices),
        *authorizer_lines(inputs, prices),
        *cloudwatch_lines(inputs, prices),
        *messaging_lines(inputs, prices),
    ]
    return Breakdown(inputs, tuple(lines), _warnings(inputs))


def _warnings(i: CostInputs) -> tuple[str, ...]:
    warnings = []
    if i.stream_mode == "provisioned" and i.shards < shards_needed(i):
        warnings.append(
            f"{i.shards} shard(s) cannot take {i.peak_calls_per_second:,.0f} calls/s (the stage's throttle)"
            f" at {i.events_per_record} event(s) per record: {shards_needed(i)} needed"
        )
    if i.events_per_record > 1:
        warnings.append(
            "more than one event per record changes usage event v1 (one object per record) and the"
            " consumer's 16 KiB record limit; aggregate only records bound for one shard (field notes)"
        )
    if (i.fargate_vcpu, i.fargate_gb) != MEASURED_TASK_SIZE:
        warnings.append("the consumer has only run at 1 vCPU / 2 GB: load-test this task size first")
    return tuple(warnings)


# ---------------------------------------------------------------------------------------------
# Alternatives and the cheapest configuration that keeps 7-day replay
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alternative:
    name: str
    lines: tuple[Line, ...]
    keeps_replay: bool
    note: str
    fixed_usd: float | None = None  # an estimate quoted as a whole, not priced line by line

    @property
    def total_usd(self) -> float:
        if self.fixed_usd is not None:
            return self.fixed_usd
        return sum(line.monthly_usd or 0.0 for line in self.lines)

    @property
    def unpriced(self) -> tuple[Line, ...]:
        return tuple(line for line in self.lines if line.price.usd is None)


def alternatives(inputs: CostInputs, prices: PriceTable = PRICES) -> list[Alternative]:
    validate(inputs)
    design = breakdown(inputs, prices)
    direct_writes = inputs.calls_per_month * (
        inputs.direct_items_per_call + inputs.direct_index_writes_per_call
    )
    direct = [
        Line(
            "DynamoDB",
            "counter UpdateItems and index copies, per call",
            direct_writes / 1e6,
            prices.dynamodb_writes,
        ),
        *shared_dynamodb_lines(inputs, prices),
        *authorizer_lines(inputs, prices, ms=inputs.direct_authorizer_ms),
        *cloudwatch_lines(inputs, prices, consumer=False),
        *messaging_lines(inputs, prices)[1:],  # no dead letters: a failed write is lost or retried
    ]
    not_authorizer = [line for line in design.lines if line.service != "Lambda"]
    edge = [*authorizer_lines(inputs, prices, edge=True), *not_authorizer]
    return [
        Alternative(
            "design document's estimate",
            (),
            keeps_replay=True,
            note="quoted for 10M calls/month; it left out the consumer fleet",
            fixed_usd=DESIGN_ESTIMATE_USD,
        ),
        Alternative(
            "direct DynamoDB writes from the authorizer",
            tuple(direct),
            keeps_replay=False,
            note="no stream, no consumer: nothing to replay, a retried write counts twice, and the GLOBAL"
            " minute item takes every call (one partition: about 1,000 writes/s)",
        ),
        Alternative(
            "metering in Lambda@Edge",
            tuple(edge),
            keeps_replay=inputs.retention_days >= REPLAY_DAYS,
            note="the authorizer's invocations at Edge rates, the rest as designed; CloudFront's own"
            " request charges are not included",
        ),
    ]


@dataclass(frozen=True, slots=True)
class Cheapest:
    breakdown: Breakdown
    changes: dict[str, object]
    skipped: tuple[str, ...] = field(default=())


def cheapest_with_replay(inputs: CostInputs, prices: PriceTable = PRICES) -> Cheapest:
    """Search stream mode, shards, architecture, task size and publishing mode; keep 7 days."""
    validate(inputs)
    base = replace(inputs, retention_days=max(inputs.retention_days, REPLAY_DAYS))
    reference = {_key(line) for line in breakdown(replace(base, stream_mode="provisioned"), prices).unpriced}
    min_vcpu = inputs.peak_calls_per_second * CPU_HEADROOM / EVENTS_PER_VCPU_SECOND
    needed = shards_needed(base)
    shard_choices = range(1, max(4, needed) + 1)
    skipped: set[str] = set()
    best: Breakdown | None = None
    modes: tuple[StreamMode, ...] = ("provisioned", "on-demand")
    architectures: tuple[Architecture, ...] = ("x86_64", "arm64")
    publishing_modes: tuple[Publishing, ...] = ("putmetricdata", "emf")
    knobs = product(modes, shard_choices, architectures, TASK_SIZES, publishing_modes)
    for mode, shards, arch, (vcpu, gb), publishing in knobs:
        if mode == "provisioned" and shards < needed:
            continue  # refuses events at the peak the stage admits
        if mode == "on-demand" and shards != needed:
            continue  # shards are not ours to choose there: price each on-demand candidate once
        if gb < MIN_TASK_GB or vcpu < min_vcpu:
            continue
        candidate = breakdown(
            replace(
                base,
                stream_mode=mode,
                shards=shards,
                architecture=arch,
                fargate_vcpu=vcpu,
                fargate_gb=gb,
                publishing=publishing,
            ),
            prices,
        )
        missing = {_key(line) for line in candidate.unpriced} - reference
        if missing:
            skipped.add(f"{mode}: no price for {', '.join(sorted(item for _, item in missing))}")
            continue
        if best is None or candidate.total_usd < best.total_usd:
            best = candidate
    if best is None:
        raise ValueError("no configuration fits the constraints")
    changes = {
        name: getattr(best.inputs, name)
        for name in (
            "stream_mode",
            "shards",
            "architecture",
            "fargate_vcpu",
            "fargate_gb",
            "publishing",
            "retention_days",
        )
        if getattr(best.inputs, name) != getattr(inputs, name)
    }
    return Cheapest(best, changes, tuple(sorted(skipped)))


def _key(line: Line) -> tuple[str, str]:
    return line.service, line.item
