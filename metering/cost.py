"""The monthly cost of metering, from a dated price table (us-east-1): `metering cost` prints it.

Pure: no AWS client. `breakdown(inputs)` prices one configuration line by line; `alternatives()`
prices the designs we did not build; `cheapest_with_replay()` searches the discrete knobs for the
cheapest configuration that still keeps 7 days of stream for `metering replay`.

The consumer's DynamoDB writes come from `writes_per_event`, a model of what the real sink writes
per flush (every item kind, each user's items once per flush they call in), which
`bench/writes.py` checks against the production `DynamoDBSink` in the same run (BENCHMARKS.md).
Every other quantity is either measured here (named `MEASURED_...`, with the command) or an input
whose default says where it comes from.

Every price names the page it comes from and the date it was read. A price we could not find on an
AWS pricing page is `None`: its line keeps its quantity, costs nothing in the total, and the total
says it is incomplete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Literal

from contract.cloudwatch import CONSUMER, METRICS

StreamMode = Literal["provisioned", "on-demand"]
Architecture = Literal["x86_64", "arm64"]
Publishing = Literal["api", "emf"]  # CLOUDWATCH_METRICS of the consumer
KclMetrics = Literal["SUMMARY", "NONE"]  # the KCL daemon's metricsLevel in AWS
Projection = Literal["all", "keys-only"]  # the by-bucket index's projection

REGION = "us-east-1"
HOURS_PER_MONTH = 730  # AWS's own convention: 8,760 hours a year / 12
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MONTH = SECONDS_PER_MONTH
GIB = 2**30
KIB = 2**10

TARGET_USD = 75.0  # issue 12: every feature at 10M calls/month under $75
DESIGN_ESTIMATE_USD = 90.0  # the design document's estimate for 10M calls/month (no consumer fleet)
REPLAY_DAYS = 7  # `metering replay` rebuilds any window the stream still holds

# ---------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------

READ_ON = "2026-11-30"
READ_AGAIN_ON = "2026-12-07"  # the prices first found on that day
NOT_FOUND = "not found on an AWS pricing page with the search tools on 2026-11-30"
# How a price was found when not read off its page itself (it names the page all the same).
PRICE_LIST = "from the AWS Price List (us-east-1)"
QUOTED = "as quoted from this page by a third-party page; re-check before relying on it"

KINESIS_PAGE = "https://aws.amazon.com/kinesis/data-streams/pricing/"
DYNAMODB_PAGE = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
FARGATE_PAGE = "https://aws.amazon.com/fargate/pricing/"
LAMBDA_PAGE = "https://aws.amazon.com/lambda/pricing/"
CLOUDWATCH_PAGE = "https://aws.amazon.com/cloudwatch/pricing/"
SQS_PAGE = "https://aws.amazon.com/sqs/pricing/"
SNS_PAGE = "https://aws.amazon.com/sns/pricing/"


@dataclass(frozen=True, slots=True)
class Price:
    usd: float | None  # None: not found on an AWS pricing page, so not invented
    per: str  # the unit a line's quantity is counted in
    source: str
    as_of: str = READ_ON
    note: str = ""


@dataclass(frozen=True, slots=True)
class PriceTable:
    kinesis_shard_hour: Price = Price(0.015, "shard-hour", KINESIS_PAGE)
    kinesis_put_units: Price = Price(0.014, "1M PUT payload units", KINESIS_PAGE)
    kinesis_extended_retention: Price = Price(0.020, "shard-hour", KINESIS_PAGE)
    kinesis_long_term_retention: Price = Price(0.023, "GB-month", KINESIS_PAGE, READ_AGAIN_ON, PRICE_LIST)
    # On-demand (standard), as the page and the AWS Big Data blog of 2026-03-09 give them.
    kinesis_on_demand_stream_hour: Price = Price(0.04, "stream-hour", KINESIS_PAGE, READ_AGAIN_ON)
    kinesis_on_demand_data_in: Price = Price(0.08, "GB", KINESIS_PAGE, READ_AGAIN_ON)
    kinesis_on_demand_data_out: Price = Price(0.04, "GB", KINESIS_PAGE, READ_AGAIN_ON)
    kinesis_on_demand_retention: Price = Price(0.10, "GB-month", KINESIS_PAGE, READ_AGAIN_ON)
    dynamodb_writes: Price = Price(0.625, "1M write units", DYNAMODB_PAGE)
    dynamodb_reads: Price = Price(0.125, "1M read units", DYNAMODB_PAGE)
    dynamodb_storage: Price = Price(0.25, "GB-month", DYNAMODB_PAGE)
    dynamodb_pitr: Price = Price(0.20, "GB-month", DYNAMODB_PAGE, READ_AGAIN_ON, PRICE_LIST)
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
    lambda_edge_requests: Price = Price(0.60, "1M requests", LAMBDA_PAGE, READ_AGAIN_ON, QUOTED)
    lambda_edge_duration: Price = Price(0.00005001, "GB-second", LAMBDA_PAGE, READ_AGAIN_ON, QUOTED)
    cloudwatch_metric: Price = Price(0.30, "metric-month", CLOUDWATCH_PAGE)
    cloudwatch_put_metric_data: Price = Price(0.01, "1,000 requests", CLOUDWATCH_PAGE)
    cloudwatch_alarm: Price = Price(0.10, "alarm metric-month", CLOUDWATCH_PAGE)
    cloudwatch_dashboard: Price = Price(3.00, "dashboard-month", CLOUDWATCH_PAGE)
    cloudwatch_logs_ingestion: Price = Price(0.50, "GB", CLOUDWATCH_PAGE)
    # Standard queue; the first million requests a month are free, not deducted here.
    sqs_requests: Price = Price(0.40, "1M requests", SQS_PAGE, READ_AGAIN_ON, PRICE_LIST)
    sns_publishes: Price = Price(0.50, "1M publishes", SNS_PAGE, READ_AGAIN_ON, PRICE_LIST)

    def named(self) -> dict[str, Price]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


PRICES = PriceTable()

# ---------------------------------------------------------------------------------------------
# Measured figures (each with the command that measured it; BENCHMARKS.md has the runs)
# ---------------------------------------------------------------------------------------------

# `.venv/bin/python -m bench.writes`: mean size in bytes of each item kind as the sink leaves it
# (counters, bucket, expiry, a watermark per shard writing it; 5 endpoints), for storage. All are
# under 1 KB: one write unit each. An archive page holds its caller's events of one flush,
# zlib-compressed (`consumer.core.archive`): ~476 B with one event, ~6.3 KB with 99.
MEASURED_ITEM_BYTES = {
    "USER TOTAL": 215,
    "USER HOUR": 390,  # without its minute counters (below)
    "USER DAY": 295,
    "USER MONTH": 365,
    "IP HOUR": 230,
    "KEY HOUR": 210,
    "GLOBAL MINUTE": 300,
    "GLOBAL HOUR": 450,
    "GLOBAL DAY": 310,
    "GLOBAL MONTH": 305,
    "ENDPOINT MINUTE": 385,
    "ENDPOINT HOUR": 375,
}
# A user's minutes are counters of its hour item (`c07`: a 3-byte name and a small number), so that
# item grows through the hour by this much per minute and kind the user is counted in.
MEASURED_MINUTE_COUNTER_BYTES = 6
MEASURED_PAGE_BYTES = 420  # an archive page's keys, expiry and compression overhead
MEASURED_PAGE_EVENT_BYTES = 59  # each event it holds, compressed
# The KCL daemon's log lines with properties/logback.xml's quiet loggers, 2 shards at rest: 26,191 bytes
# in 1,293 s, ~20 B/s (BENCHMARKS.md, "Logs").
MEASURED_DAEMON_LOG_BYTES_PER_SECOND = 20
# authorizer.metrics.EmfMetrics for one allowed request: two EMF lines (Decisions by outcome; the rest).
MEASURED_AUTHORIZER_EMF_BYTES = 521
# consumer.core.measures.MetricFolder.emf_documents for 30 s at 10M calls/month: one document.
MEASURED_CONSUMER_EMF_BYTES = 1_639
# ecs/monitoring.yaml: 14 alarms reading 17 metrics (three are metric-math alarms over two).
ALARMS, ALARM_METRICS = 14, 17

# Kinesis
PUT_PAYLOAD_UNIT_BYTES = 25 * KIB  # Kinesis provisioned bills PUTs per 25 KB of a record
ON_DEMAND_ROUNDING_BYTES = KIB  # on-demand bills each record rounded up to 1 KB (pricing page)
SHARD_RECORDS_PER_SECOND = 1_000  # per-shard write quota (field notes)
SHARD_BYTES_PER_SECOND = 2**20
MAX_RECORD_BYTES = 2**20  # a Kinesis record's data (1 MiB)
# DynamoDB
DYNAMODB_ITEM_OVERHEAD_BYTES = 100  # DynamoDB adds 100 bytes per item (and per index entry) to storage
INDEX_KEY_BYTES = 80  # a keys-only index entry: pk, sk and bucket
KCL_LEASE_EPSILON_SECONDS = 0.025  # the KCL renews every failover/3 - epsilon (CommonCalculations)
KCL_METRICS_BUFFER_SECONDS = 10.0  # the KCL flushes its CloudWatch metrics every 10 s ...
KCL_DATUMS_PER_CALL = 20  # ... at most 20 datums per PutMetricData (CloudWatchMetricsPublisher)
RETENTION_DAYS = {"MINUTE": 7, "HOUR": 7, "DAY": 400, "MONTH": 25 * 31}  # contract/table.py
ARCHIVE_DAYS = 90
# Fargate: the consumer task's peak RSS in MiB, measured (bench/memory.py, BENCHMARKS.md):
# `metering consume`, the JVM sized for a 1 GB container, and a record-processor child per shard
# held (97 MiB idle, +105 MiB with 100,000 callers in one flush window).
MEASURED_TASK_MIB = {"consume": 79, "jvm": 192, "child": 202}
ON_DEMAND_SHARDS = 4  # an on-demand stream opens with 4 shards (ecs/consumer.yaml)
# Field notes: the whole processor ran at 0.46-0.67 x ~53k records/s on one core; the low end.
EVENTS_PER_VCPU_SECOND = 24_000.0
CPU_HEADROOM = 4.0  # the JVM, polling, GC and catching up after an outage share the task's CPU

# ---------------------------------------------------------------------------------------------
# The consumer's writes
# ---------------------------------------------------------------------------------------------

USER_KINDS = ("USER TOTAL", "USER HOUR", "USER DAY", "USER MONTH")  # a user's minutes: in its hour
GLOBAL_KINDS = ("GLOBAL MINUTE", "GLOBAL HOUR", "GLOBAL DAY", "GLOBAL MONTH")
NOT_IN_INDEX = frozenset({"USER TOTAL", "ARCHIVE page", "FLUSH intent"})  # no `bucket` attribute


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the consumer's writes depend on: who calls how often, and how often each shard flushes.

    Each user calls at the same steady rate (Poisson arrivals), the worst case for writes at a
    given volume: bursty callers share more of their items within a flush.
    """

    events_per_second: float
    users: int
    shards: int = 2
    flush_interval_seconds: float = 5.0
    rate_limited_share: float = 0.01  # refusals of known keys: KEY hour items
    keyless_share: float = 0.005  # calls without a key: counted per address only
    keyless_addresses: int = 254  # the addresses those come from
    endpoints: int = 5  # distinct method + route of the API
    access_logs: bool = True  # API Gateway's access logs reach the stream: ENDPOINT items
    archive: bool = True  # the raw-event archive (issue 11)

    def user_rate(self) -> float:
        return self.events_per_second * (1 - self.keyless_share) / self.users

    def keyless_rate(self) -> float:
        """Keyless calls of one address on one shard (they are keyed by event id: every shard)."""
        return self.events_per_second * self.keyless_share / (self.shards * self.keyless_addresses)


@dataclass(frozen=True, slots=True)
class WriteEstimate:
    """Per usage event: write requests by item kind, and the write units they bill."""

    requests_by_kind: dict[str, float]
    table_units_by_kind: dict[str, float]
    index_units_by_kind: dict[str, float]

    @property
    def requests(self) -> float:
        return sum(self.requests_by_kind.values())

    @property
    def table_units(self) -> float:
        return sum(self.table_units_by_kind.values())

    @property
    def index_units(self) -> float:
        return sum(self.index_units_by_kind.values())

    @property
    def units(self) -> float:
        return self.table_units + self.index_units


def hit(rate: float, window: float) -> float:
    """The chance that a Poisson stream of `rate` has an event within `window` seconds."""
    return -math.expm1(-rate * window)


def touched(rate: float, window: float, bucket: float) -> float:
    """Expected buckets of `bucket` seconds in which a Poisson stream of `rate` has events, within one
    flush window of `window` <= `bucket` seconds that starts at a random offset (it crosses a bucket
    edge with probability window / bucket)."""
    if rate <= 0:
        return 0.0
    window = min(window, bucket)
    chance = hit(rate, window)
    return (1 - window / bucket) * chance + 2 / bucket * (window - chance / rate)


def writes_per_flush(t: Traffic) -> dict[str, float]:
    """Expected item writes of one shard's flush, by kind (`consumer.core.aggregate`): each item an
    event of the window touches is written once, however many of its events it holds."""
    window, users = t.flush_interval_seconds, t.users / t.shards
    user, shard = t.user_rate(), t.events_per_second / t.shards
    per_hour = users * touched(user, window, HOUR)
    keyless = t.keyless_addresses * touched(t.keyless_rate(), window, HOUR)
    writes = {
        "USER TOTAL": users * hit(user, window),
        "USER HOUR": per_hour,
        "USER DAY": users * hit(user, window),
        "USER MONTH": users * hit(user, window),
        "IP HOUR": per_hour + keyless,  # one address per user
        "KEY HOUR": users * touched(user * t.rate_limited_share, window, HOUR),
        "GLOBAL MINUTE": touched(shard, window, MINUTE),
        "GLOBAL HOUR": touched(shard, window, HOUR),
        "GLOBAL DAY": touched(shard, window, HOUR),
        "GLOBAL MONTH": touched(shard, window, HOUR),
        "FLUSH intent": hit(shard, window),
    }
    if t.archive:
        writes["ARCHIVE page"] = per_hour + keyless
    if t.access_logs:  # responses land on any shard, each counted in its endpoint's minute and hour
        endpoint = t.events_per_second / (t.endpoints * t.shards)
        writes["ENDPOINT MINUTE"] = t.endpoints * touched(endpoint, window, MINUTE)
        writes["ENDPOINT HOUR"] = t.endpoints * touched(endpoint, window, HOUR)
    return writes


def user_hour_bytes(t: Traffic, minutes: int) -> float:
    """A user's hour item after `minutes` minutes of the hour: the minutes the user called in, and
    those it was refused in, each add a counter."""
    user = t.user_rate()
    counters = minutes * (
        hit(user * (1 - t.rate_limited_share), MINUTE) + hit(user * t.rate_limited_share, MINUTE)
    )
    return MEASURED_ITEM_BYTES["USER HOUR"] + MEASURED_MINUTE_COUNTER_BYTES * counters


def user_hour_units(t: Traffic) -> float:
    """Write units of one update of a user's hour item, over the hour: an update bills the item after
    it (the larger image) in 1 KB units, so past some minute of a busy hour it costs two."""
    return sum(math.ceil(user_hour_bytes(t, minute) / KIB) for minute in range(1, 61)) / 60


def item_units(t: Traffic, kind: str) -> float:
    """Write units of one write of an item kind (every other item stays under 1 KB)."""
    if kind == "ARCHIVE page":
        return page_units(t)
    return user_hour_units(t) if kind == "USER HOUR" else 1.0


def page_units(t: Traffic) -> float:
    """Write units of one archive page: ceil(size / 1 KB), its size growing with its events."""
    pages = writes_per_flush(t).get("ARCHIVE page", 0.0)
    if not pages:
        return 1.0
    events = t.events_per_second / t.shards * t.flush_interval_seconds / pages
    return float(math.ceil((MEASURED_PAGE_BYTES + MEASURED_PAGE_EVENT_BYTES * events) / KIB))


def created_per_second(t: Traffic) -> dict[str, float]:
    """New items per second by kind: what a keys-only index writes (an update leaves it alone)."""
    user, events = t.user_rate(), t.events_per_second
    keyless = t.keyless_addresses * hit(events * t.keyless_share / t.keyless_addresses, HOUR) / HOUR
    endpoint = events / t.endpoints
    created = {
        "USER HOUR": t.users * hit(user, HOUR) / HOUR,
        "USER DAY": t.users * hit(user, DAY) / DAY,
        "USER MONTH": t.users * hit(user, MONTH) / MONTH,
        "IP HOUR": t.users * hit(user, HOUR) / HOUR + keyless,
        "KEY HOUR": t.users * hit(user * t.rate_limited_share, HOUR) / HOUR,
        "GLOBAL MINUTE": 1 / MINUTE,
        "GLOBAL HOUR": 1 / HOUR,
        "GLOBAL DAY": 1 / DAY,
        "GLOBAL MONTH": 1 / MONTH,
    }
    if t.access_logs:
        created["ENDPOINT MINUTE"] = t.endpoints * hit(endpoint, MINUTE) / MINUTE
        created["ENDPOINT HOUR"] = t.endpoints * hit(endpoint, HOUR) / HOUR
    return created


def writes_per_event(t: Traffic, projection: Projection = "keys-only") -> WriteEstimate:
    """Write requests and billed write units per usage event (the KCL's own writes apart).

    Items are under 1 KB (`MEASURED_ITEM_BYTES`) but archive pages (`page_units`). The by-bucket
    index is keys-only: it writes an entry when an item is created (an update changing no
    projected attribute writes no index entry); "all" prices the index tables created before it
    had, which wrote every bucket item again.
    """
    per_flush = t.shards / (t.events_per_second * t.flush_interval_seconds)
    requests = {kind: n * per_flush for kind, n in writes_per_flush(t).items()}
    table = {kind: n * item_units(t, kind) for kind, n in requests.items()}
    if projection == "all":
        index = {kind: n for kind, n in table.items() if kind not in NOT_IN_INDEX}
    else:
        index = {kind: n / t.events_per_second for kind, n in created_per_second(t).items()}
    return WriteEstimate(requests, table, index)


def items_kept(t: Traffic) -> dict[str, float]:
    """Items alive at once, by kind: buckets live as long as their TTL (`contract.table`), the
    archive 90 days, TOTAL items for ever."""
    user, events = t.user_rate(), t.events_per_second
    keyless = t.keyless_addresses * hit(events * t.keyless_share / t.keyless_addresses, HOUR)
    kept = {
        "USER TOTAL": float(t.users),
        "USER HOUR": t.users * hit(user, HOUR) * RETENTION_DAYS["HOUR"] * DAY / HOUR,
        "USER DAY": t.users * hit(user, DAY) * RETENTION_DAYS["DAY"],
        "USER MONTH": t.users * hit(user, MONTH) * RETENTION_DAYS["MONTH"] * DAY / MONTH,
        "IP HOUR": (t.users * hit(user, HOUR) + keyless) * RETENTION_DAYS["HOUR"] * 24,
        "KEY HOUR": t.users * hit(user * t.rate_limited_share, HOUR) * RETENTION_DAYS["HOUR"] * 24,
        "GLOBAL MINUTE": RETENTION_DAYS["MINUTE"] * DAY / MINUTE,
        "GLOBAL HOUR": RETENTION_DAYS["HOUR"] * 24.0,
        "GLOBAL DAY": float(RETENTION_DAYS["DAY"]),
        "GLOBAL MONTH": RETENTION_DAYS["MONTH"] * DAY / MONTH,
    }
    if t.access_logs:
        endpoint = events / t.endpoints
        kept["ENDPOINT MINUTE"] = (
            t.endpoints * hit(endpoint, MINUTE) * RETENTION_DAYS["MINUTE"] * DAY / MINUTE
        )
        kept["ENDPOINT HOUR"] = t.endpoints * hit(endpoint, HOUR) * RETENTION_DAYS["HOUR"] * 24
    if t.archive:
        pages = writes_per_event(t).requests_by_kind["ARCHIVE page"] * events
        kept["ARCHIVE page"] = pages * ARCHIVE_DAYS * DAY
    return kept


def storage_gb(t: Traffic, projection: Projection = "keys-only") -> float:
    """The table's and the index's billed bytes (each item and index entry plus 100 bytes)."""
    kept = items_kept(t)
    pages_per_event = writes_per_event(t).requests_by_kind.get("ARCHIVE page", 1.0)
    page_bytes = MEASURED_PAGE_BYTES + MEASURED_PAGE_EVENT_BYTES / pages_per_event
    table = index = 0.0
    for kind, count in kept.items():
        size = page_bytes if kind == "ARCHIVE page" else MEASURED_ITEM_BYTES[kind]
        if kind == "USER HOUR":
            size = user_hour_bytes(t, 60)  # kept whole: all its minutes
        table += count * (size + DYNAMODB_ITEM_OVERHEAD_BYTES)
        if kind not in NOT_IN_INDEX:
            entry = size if projection == "all" else INDEX_KEY_BYTES
            index += count * (entry + DYNAMODB_ITEM_OVERHEAD_BYTES)
    return (table + index) / GIB


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostInputs:
    """One deployment and its traffic. The defaults are the recommended configuration
    (docs/cost.md); `AS_DEPLOYED` is what the templates deploy today."""

    calls_per_month: int = 10_000_000
    users: int = 100  # active users in a month; each calls at a steady rate (the worst case)
    # The peak the stream must take without refusing: the stage's ThrottlingRateLimit
    # (ecs/api-gateway.yaml), since API Gateway admits that much before any authorizer runs.
    peak_calls_per_second: float = 2_000.0
    rate_limited_share: float = 0.01
    keyless_share: float = 0.005
    endpoints: int = 5
    # Kinesis. The record format sets `events_per_record` and `bytes_per_record`: what the producer
    # puts in a record at the peak the stage admits, which sizes the shards (PUT units are billed
    # from them too, which weighs little: $0.014 per million records of up to 25 KB).
    stream_mode: StreamMode = "provisioned"
    shards: int | None = None  # provisioned: None takes as many as the peak needs (`shards_needed`)
    retention_days: int = 7  # the replay window (ecs/consumer.yaml: RetentionPeriodHours 168)
    events_per_record: float = 25.0  # usage batch v2 at the peak: the producer sends 25 events a record ...
    bytes_per_record: int = 2_375  # ... of ~95 B each (bench/producer_formats.py); v1 records: 1 and 420
    access_logs: bool = True  # API Gateway access logs, through CloudWatch Logs, into the stream
    access_log_line_bytes: int = 400  # the stage's AccessLogSetting.Format, one JSON line per request
    access_log_lines_per_record: int = 100  # PLACEHOLDER: log events per subscription delivery
    access_log_compression: float = 13.0  # gzip of a batch of ordinary lines (consumer/core/access_logs.py)
    # Fargate (the KCL consumer)
    fargate_tasks: int = 1
    fargate_vcpu: float = 0.5
    fargate_gb: float = 1.0
    architecture: Architecture = "arm64"
    flush_interval_seconds: float = 60.0  # FLUSH_INTERVAL_SECONDS
    kcl_failover_seconds: float = 10.0  # properties: failoverTimeMillis
    kcl_lease_assignment_seconds: float = 5.0  # properties: leaseAssignmentIntervalMillis
    # DynamoDB
    writes_per_1000_events: float | None = None  # None: `writes_per_event`; a figure overrides it
    index_projection: Projection = "keys-only"  # contract.table.analytics_table_spec
    archive: bool = True  # the raw-event archive (90 days)
    analytics_reads_per_month: int = 1_000_000  # PLACEHOLDER: `metering usage`, exports, GET /v1/usage
    key_cache_seconds: float = 30.0  # KEY_CACHE_TTL_SECONDS
    last_used_every_seconds: float = 300.0  # last-used written at most once per 5 min per key
    warm_containers: int = 2  # PLACEHOLDER: authorizer containers kept warm
    # Lambda: the authorizer (one invocation per call: cache TTL 0) and GET /v1/usage
    authorizer_ms: float = 5.0
    authorizer_mb: int = 512
    usage_api_calls_per_month: int = 100_000  # PLACEHOLDER
    usage_api_ms: float = 50.0
    usage_api_mb: int = 256
    # CloudWatch
    consumer_metrics: Publishing = "emf"  # CLOUDWATCH_METRICS
    metrics_publish_seconds: float = 30.0  # METRICS_PUBLISH_SECONDS
    kcl_metrics_level: KclMetrics = "NONE"  # consumer/daemon.py sets SUMMARY in AWS
    kcl_metrics: int = 25  # PLACEHOLDER: metrics the KCL publishes at SUMMARY (count them with ListMetrics)
    container_insights: bool = False  # ecs/consumer.yaml turns it on for its task-count alarm
    container_insights_metrics: int = 30  # ECS Container Insights' cluster, service and task-family metrics
    incident_metric_hours: float = 24.0  # hours a month a metric that only counts failures is published
    lambda_platform_log_bytes: int = 300  # START, END and REPORT lines per invocation
    lambda_platform_logs: bool = False  # Lambda's SystemLogLevel WARN (JSON log format) drops them
    daemon_info_logs: bool = False  # the KCL daemon's INFO lines (properties/logback.xml)
    alarms: int = ALARMS
    alarm_metrics: int = ALARM_METRICS
    dashboards: int = 1
    # SQS / SNS
    dead_letters_per_month: int = 1_000  # PLACEHOLDER
    alarm_notifications_per_month: int = 100  # PLACEHOLDER
    # Alternatives
    direct_authorizer_ms: float = 10.0  # PLACEHOLDER: the authorizer waiting for its writes
    edge_mb: int = 128  # Lambda@Edge viewer triggers allow 128 MB

    def stream_shards(self) -> int:
        """The stream's shards, so the consumer's record-processor children."""
        if self.stream_mode == "on-demand":
            return max(ON_DEMAND_SHARDS, shards_needed(self))
        return self.shards if self.shards is not None else shards_needed(self)

    def traffic(self) -> Traffic:
        return Traffic(
            events_per_second=self.calls_per_month / SECONDS_PER_MONTH,
            users=self.users,
            shards=self.stream_shards(),
            flush_interval_seconds=self.flush_interval_seconds,
            rate_limited_share=self.rate_limited_share,
            keyless_share=self.keyless_share,
            endpoints=self.endpoints,
            access_logs=self.access_logs,
            archive=self.archive,
        )


# What ecs/*.yaml, properties/ and the settings deploy by default (tests/unit/test_cost.py reads
# the templates' defaults against these).
AS_DEPLOYED = CostInputs(
    shards=2,
    fargate_tasks=2,
    fargate_vcpu=0.5,
    fargate_gb=1.0,
    architecture="x86_64",
    flush_interval_seconds=60.0,
    consumer_metrics="api",
    kcl_metrics_level="SUMMARY",
    container_insights=True,
    lambda_platform_logs=True,
    daemon_info_logs=True,
)

PLACEHOLDERS = (
    "users",
    "access_log_lines_per_record",
    "analytics_reads_per_month",
    "warm_containers",
    "usage_api_calls_per_month",
    "kcl_metrics",
    "dead_letters_per_month",
    "alarm_notifications_per_month",
    "direct_authorizer_ms",
)


def validate(inputs: CostInputs) -> None:
    """Raise ValueError('<input>: why') for the first input that cannot describe a deployment."""
    checks = (
        (inputs.calls_per_month > 0, "calls_per_month", "must be positive"),
        (inputs.users > 0, "users", "must be positive"),
        (inputs.shards is None or inputs.shards >= 1, "shards", "must be at least 1"),
        (inputs.shards is None or inputs.stream_mode == "provisioned", "shards", "on-demand opens its own"),
        (1 <= inputs.retention_days <= 365, "retention_days", "must be between 1 and 365"),
        (inputs.events_per_record >= 1, "events_per_record", "must be at least 1"),
        (0 < inputs.bytes_per_record <= MAX_RECORD_BYTES, "bytes_per_record", "must be 1 B to 1 MiB"),
        (inputs.fargate_tasks >= 1, "fargate_tasks", "must be at least 1"),
        (0.2 <= inputs.flush_interval_seconds <= 60, "flush_interval_seconds", "must be 0.2-60 (settings)"),
        ((inputs.writes_per_1000_events or 0) >= 0, "writes_per_1000_events", "cannot be negative"),
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


def log_records_per_month(i: CostInputs) -> int:
    return math.ceil(i.calls_per_month / i.access_log_lines_per_record) if i.access_logs else 0


def log_record_bytes(i: CostInputs) -> int:
    return math.ceil(i.access_log_lines_per_record * i.access_log_line_bytes / i.access_log_compression)


def shards_needed(i: CostInputs) -> int:
    """Shards whose write quota (records/s and bytes/s) takes the peak the stage admits."""
    records = i.peak_calls_per_second / i.events_per_record
    logs = i.peak_calls_per_second / i.access_log_lines_per_record if i.access_logs else 0.0
    data = records * i.bytes_per_record + logs * log_record_bytes(i)
    return max(
        1,
        math.ceil((records + logs) / SHARD_RECORDS_PER_SECOND),
        math.ceil(data / SHARD_BYTES_PER_SECOND),
    )


def kinesis_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    records, logs = records_per_month(i), log_records_per_month(i)
    monthly_gb = (records * i.bytes_per_record + logs * log_record_bytes(i)) / GIB
    daily_gb = monthly_gb / (HOURS_PER_MONTH / 24)
    shards = i.stream_shards()
    if i.stream_mode == "provisioned":
        lines = [
            Line("Kinesis", f"{shards} shards", shards * HOURS_PER_MONTH, p.kinesis_shard_hour),
            Line(
                "Kinesis",
                f"PUT payload units ({records:,} usage records of {i.bytes_per_record:,} B)",
                records * math.ceil(i.bytes_per_record / PUT_PAYLOAD_UNIT_BYTES) / 1e6,
                p.kinesis_put_units,
            ),
        ]
        if logs:
            units = logs * math.ceil(log_record_bytes(i) / PUT_PAYLOAD_UNIT_BYTES) / 1e6
            lines.append(
                Line(
                    "Kinesis", f"PUT payload units ({logs:,} access-log records)", units, p.kinesis_put_units
                )
            )
        if i.retention_days > 1:  # 24 h is included; up to 7 days bills every shard-hour
            lines.append(
                Line(
                    "Kinesis",
                    "extended retention (to 7 d)",
                    shards * HOURS_PER_MONTH,
                    p.kinesis_extended_retention,
                )
            )
    else:
        rounded = records * math.ceil(i.bytes_per_record / ON_DEMAND_ROUNDING_BYTES)
        rounded += logs * math.ceil(log_record_bytes(i) / ON_DEMAND_ROUNDING_BYTES)
        lines = [
            Line("Kinesis", "on-demand stream", HOURS_PER_MONTH, p.kinesis_on_demand_stream_hour),
            Line(
                "Kinesis",
                "data in (records rounded up to 1 KB)",
                rounded * KIB / GIB,
                p.kinesis_on_demand_data_in,
            ),
            Line("Kinesis", "data out (one consumer)", monthly_gb, p.kinesis_on_demand_data_out),
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


def analytics_writes(i: CostInputs) -> tuple[float, float]:
    """Table and index write units per event: the model's, or the figure given instead (all table)."""
    if i.writes_per_1000_events is not None:
        return i.writes_per_1000_events / 1000, 0.0
    estimate = writes_per_event(i.traffic(), i.index_projection)
    return estimate.table_units, estimate.index_units


def consumer_dynamodb_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    """What the consumer writes: its items (modelled per event) and the KCL's own bookkeeping."""
    table, index = analytics_writes(i)
    per_1000 = f"{table * 1000:,.0f} per 1,000 events"
    how = (
        "given"
        if i.writes_per_1000_events is not None
        else f"flush {i.flush_interval_seconds:g} s, {i.users:,} users"
    )
    renew_seconds = i.kcl_failover_seconds / 3 - KCL_LEASE_EPSILON_SECONDS
    kcl_writes = i.stream_shards() * SECONDS_PER_MONTH * (1 / i.flush_interval_seconds + 1 / renew_seconds)
    kcl_reads = SECONDS_PER_MONTH / i.kcl_lease_assignment_seconds  # the lease assigner reads the lease table
    lines = [
        Line(
            "DynamoDB",
            f"analytics item writes ({per_1000}; {how})",
            i.calls_per_month * table / 1e6,
            p.dynamodb_writes,
        ),
    ]
    if index:
        name, projection = (
            ("by-bucket", "ALL") if i.index_projection == "all" else ("by-bucket-keys", "KEYS_ONLY")
        )
        lines.append(
            Line(
                "DynamoDB",
                f"{name} index writes ({projection}: {index * 1000:,.0f} per 1,000 events)",
                i.calls_per_month * index / 1e6,
                p.dynamodb_writes,
            )
        )
    return [
        *lines,
        Line("DynamoDB", "KCL checkpoints and lease renewals", kcl_writes / 1e6, p.dynamodb_writes),
        Line("DynamoDB", "KCL lease assignment reads", kcl_reads / 1e6, p.dynamodb_reads),
    ]


def shared_dynamodb_lines(i: CostInputs, p: PriceTable) -> list[Line]:
    """What every design pays: the authorizer's own tables, reads of the counts, and storage."""
    per_key_windows = i.users * i.warm_containers * SECONDS_PER_MONTH  # a key's cache is per container
    key_reads = min(i.calls_per_month, per_key_windows / i.key_cache_seconds)
    last_used = min(i.calls_per_month, per_key_windows / i.last_used_every_seconds)
    stored = storage_gb(i.traffic(), i.index_projection)
    return [
        Line("DynamoDB", "rate-limit UpdateItem (one per call)", i.calls_per_month / 1e6, p.dynamodb_writes),
        Line("DynamoDB", "key reads (strongly consistent, cached 30 s)", key_reads / 1e6, p.dynamodb_reads),
        Line("DynamoDB", "key last-used writes", last_used / 1e6, p.dynamodb_writes),
        Line("DynamoDB", "analytics reads", i.analytics_reads_per_month / 1e6, p.dynamodb_reads),
        Line("DynamoDB", "storage (table and index, TTLs and 90-day archive)", stored, p.dynamodb_storage),
        Line("DynamoDB", "point-in-time recovery", stored, p.dynamodb_pitr),
    ]


def lambda_lines(i: CostInputs, p: PriceTable, *, edge: bool = False, ms: float | None = None) -> list[Line]:
    """The authorizer (at Lambda@Edge rates for that alternative) and the usage endpoint."""
    ms = i.authorizer_ms if ms is None else ms
    mb = i.edge_mb if edge else i.authorizer_mb
    requests, duration = (
        (p.lambda_edge_requests, p.lambda_edge_duration)
        if edge
        else (p.lambda_requests, p.lambda_duration_x86)
    )
    name = "Lambda@Edge" if edge else "Lambda"
    usage = i.usage_api_calls_per_month
    return [
        Line(name, "authorizer invocations (cache TTL 0)", i.calls_per_month / 1e6, requests),
        Line(
            name,
            f"authorizer duration ({ms:g} ms at {mb} MB)",
            i.calls_per_month * ms / 1000 * mb / 1024,
            duration,
        ),
        Line("Lambda", "GET /v1/usage invocations", usage / 1e6, p.lambda_requests),
        Line(
            "Lambda",
            f"GET /v1/usage duration ({i.usage_api_ms:g} ms at {i.usage_api_mb} MB)",
            usage * i.usage_api_ms / 1000 * i.usage_api_mb / 1024,
            p.lambda_duration_x86,
        ),
    ]


def custom_metrics(i: CostInputs, *, consumer: bool = True) -> tuple[float, float]:
    """Metric-months of ours (`contract.cloudwatch`): those published every hour, then those only
    published when something fails (billed by the hour they appear in)."""
    steady = incidents = 0.0
    for metric in METRICS:
        if metric.publisher == CONSUMER and not consumer:
            continue
        values = len(metric_values(metric.name))
        if metric.name in INCIDENT_METRICS:
            incidents += values * i.incident_metric_hours / HOURS_PER_MONTH
        else:
            steady += values
    return steady, incidents


# Published only when they count something that went wrong (a refusal is not one: 1 % of calls).
INCIDENT_METRICS = frozenset(
    {
        "DeadLetters",
        "UncountedRecords",
        "RejectedAccessLogLines",
        "FlushRetries",
        "FlushFailures",
        "AlertsFired",
        "EventsRetried",
        "EventsFailed",
        "EventsDropped",
        "RateLimitFailOpen",
    }
)


def metric_values(name: str) -> tuple[str, ...]:
    """The dimension values a metric takes besides Environment: each is a metric of its own."""
    return {
        "Decisions": ("ALLOWED", "AUTH_FAILED", "RATE_LIMITED", "UNAVAILABLE"),
        "DeadLetters": ("INVALID_FIELD", "NOT_JSON"),  # the reasons a month usually sees
        "AlertsFired": ("USER_RATE_LIMITED", "IP_AUTH_FAILURES", "PLAN_MONTH_ALLOWANCE"),
    }.get(name, ("",))


def cloudwatch_lines(i: CostInputs, p: PriceTable, *, consumer: bool = True) -> list[Line]:
    steady, incidents = custom_metrics(i, consumer=consumer)
    lines = [
        Line("CloudWatch", "custom metrics published every hour (ours)", steady, p.cloudwatch_metric),
        Line(
            "CloudWatch",
            f"failure metrics ({i.incident_metric_hours:g} h a month each)",
            incidents,
            p.cloudwatch_metric,
        ),
        *_emf_and_platform_logs(i, p),
        Line(
            "CloudWatch",
            f"alarms ({i.alarms}, over {i.alarm_metrics} metrics)",
            i.alarm_metrics,
            p.cloudwatch_alarm,
        ),
        Line("CloudWatch", "dashboards", i.dashboards, p.cloudwatch_dashboard),
    ]
    if i.access_logs:
        gb = i.calls_per_month * i.access_log_line_bytes / GIB
        lines.append(Line("CloudWatch", "API Gateway access-log ingestion", gb, p.cloudwatch_logs_ingestion))
    if consumer:
        lines += _consumer_cloudwatch(i, p)
    return lines


def _emf_and_platform_logs(i: CostInputs, p: PriceTable) -> list[Line]:
    emf_gb = i.calls_per_month * MEASURED_AUTHORIZER_EMF_BYTES / GIB
    lines = [
        Line("CloudWatch", "authorizer EMF lines (2 per invocation)", emf_gb, p.cloudwatch_logs_ingestion)
    ]
    if i.lambda_platform_logs:
        gb = i.calls_per_month * i.lambda_platform_log_bytes / GIB
        lines.append(Line("CloudWatch", "Lambda START/END/REPORT lines", gb, p.cloudwatch_logs_ingestion))
    return lines


def _consumer_cloudwatch(i: CostInputs, p: PriceTable) -> Iterator[Line]:
    publishes = i.stream_shards() * SECONDS_PER_MONTH / i.metrics_publish_seconds  # one child per shard
    if i.consumer_metrics == "api":
        yield Line(
            "CloudWatch", "consumer PutMetricData calls", publishes / 1000, p.cloudwatch_put_metric_data
        )
    else:
        gb = publishes * MEASURED_CONSUMER_EMF_BYTES / GIB
        yield Line("CloudWatch", "consumer EMF lines", gb, p.cloudwatch_logs_ingestion)
    if i.kcl_metrics_level == "SUMMARY":
        calls = i.fargate_tasks * SECONDS_PER_MONTH / KCL_METRICS_BUFFER_SECONDS
        calls *= math.ceil(i.kcl_metrics / KCL_DATUMS_PER_CALL)
        yield Line(
            "CloudWatch", f"KCL metrics (SUMMARY, {i.kcl_metrics})", i.kcl_metrics, p.cloudwatch_metric
        )
        yield Line("CloudWatch", "KCL PutMetricData calls", calls / 1000, p.cloudwatch_put_metric_data)
    if i.container_insights:
        metrics = i.container_insights_metrics
        yield Line("CloudWatch", f"Container Insights metrics ({metrics})", metrics, p.cloudwatch_metric)
    if i.daemon_info_logs:
        gb = MEASURED_DAEMON_LOG_BYTES_PER_SECOND * SECONDS_PER_MONTH * i.stream_shards() / 2 / GIB
        yield Line("CloudWatch", "KCL daemon INFO log lines", gb, p.cloudwatch_logs_ingestion)


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
        *lambda_lines(inputs, prices),
        *cloudwatch_lines(inputs, prices),
        *messaging_lines(inputs, prices),
    ]
    return Breakdown(inputs, tuple(lines), _warnings(inputs))


def task_mib(i: CostInputs) -> float:
    """A consumer task's peak memory: the leases spread evenly, one child per shard held."""
    children = math.ceil(i.stream_shards() / i.fargate_tasks)
    return MEASURED_TASK_MIB["consume"] + MEASURED_TASK_MIB["jvm"] + children * MEASURED_TASK_MIB["child"]


def _warnings(i: CostInputs) -> tuple[str, ...]:
    warnings = []
    if i.stream_mode == "provisioned" and i.stream_shards() < shards_needed(i):
        warnings.append(
            f"{i.stream_shards()} shard(s) cannot take {i.peak_calls_per_second:,.0f} calls/s (the stage's"
            f" throttle) at {i.events_per_record:g} event(s) per record: {shards_needed(i)} needed"
        )
    if i.fargate_gb * 1024 < task_mib(i):
        warnings.append(
            f"a {i.fargate_gb:g} GB task may not hold its JVM and children ({task_mib(i):,.0f} MiB)"
        )
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


def direct_writes_per_call(i: CostInputs) -> float:
    """Write units per call when every call writes its own items: each event alone in its "flush",
    with no intent to record (and no access-log items: the authorizer never sees a response)."""
    alone = replace(i.traffic(), shards=1, flush_interval_seconds=1e-6, access_logs=False)
    estimate = writes_per_event(alone, i.index_projection)
    return estimate.units - estimate.table_units_by_kind["FLUSH intent"]


def alternatives(inputs: CostInputs, prices: PriceTable = PRICES) -> list[Alternative]:
    validate(inputs)
    design = breakdown(inputs, prices)
    direct = direct_writes_per_call(inputs)
    direct_lines = [
        Line(
            "DynamoDB",
            f"item and index writes per call ({direct:.1f})",
            inputs.calls_per_month * direct / 1e6,
            prices.dynamodb_writes,
        ),
        *shared_dynamodb_lines(inputs, prices),
        *lambda_lines(inputs, prices, ms=inputs.direct_authorizer_ms),
        *cloudwatch_lines(replace(inputs, access_logs=False), prices, consumer=False),
        *messaging_lines(inputs, prices)[1:],  # no dead letters: a failed write is lost or retried
    ]
    not_authorizer = [line for line in design.lines if not line.item.startswith("authorizer ")]
    edge = [*lambda_lines(inputs, prices, edge=True)[:2], *not_authorizer]
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
            tuple(direct_lines),
            keeps_replay=False,
            note="no stream, no consumer: nothing to replay, a retried write counts twice, no access-log"
            " analytics, and the GLOBAL minute item takes every call (one partition: about 1,000 writes/s)",
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


# Knobs the search turns; what it keeps: every feature, 7 days of stream, the peak the stage admits.
TASK_SIZES: tuple[tuple[float, float], ...] = (
    (0.25, 0.5),
    (0.25, 1.0),
    (0.5, 1.0),
    (0.5, 2.0),
    (1.0, 2.0),
    (2.0, 4.0),
)
FLUSH_INTERVALS = (5.0, 10.0, 30.0, 60.0)
SEARCHED = (
    "stream_mode",
    "shards",
    "architecture",
    "fargate_tasks",
    "fargate_vcpu",
    "fargate_gb",
    "flush_interval_seconds",
    "consumer_metrics",
    "kcl_metrics_level",
    "container_insights",
    "lambda_platform_logs",
    "daemon_info_logs",
    "retention_days",
)


def cheapest_with_replay(inputs: CostInputs, prices: PriceTable = PRICES) -> Cheapest:
    """The cheapest deployment of `inputs`' traffic and features that keeps 7 days of stream."""
    validate(inputs)
    base = replace(inputs, retention_days=max(inputs.retention_days, REPLAY_DAYS))
    reference = {_key(line) for line in breakdown(replace(base, stream_mode="provisioned"), prices).unpriced}
    min_vcpu = inputs.peak_calls_per_second * CPU_HEADROOM / EVENTS_PER_VCPU_SECOND
    skipped: set[str] = set()
    best: Breakdown | None = None
    for candidate in _candidates(base, min_vcpu):
        result = breakdown(candidate, prices)
        missing = {_key(line) for line in result.unpriced} - reference
        if missing:
            skipped.add(
                f"{candidate.stream_mode}: no price for {', '.join(sorted(item for _, item in missing))}"
            )
        elif best is None or result.total_usd < best.total_usd:
            best = result
    if best is None:
        raise ValueError("no configuration fits the constraints")
    changes = {
        name: getattr(best.inputs, name)
        for name in SEARCHED
        if getattr(best.inputs, name) != getattr(inputs, name)
    }
    return Cheapest(best, changes, tuple(sorted(skipped)))


def _candidates(base: CostInputs, min_vcpu: float) -> Iterator[CostInputs]:
    needed = shards_needed(base)
    modes: tuple[StreamMode, ...] = ("provisioned", "on-demand")
    architectures: tuple[Architecture, ...] = ("x86_64", "arm64")
    publishing: tuple[Publishing, ...] = ("api", "emf")
    # More shards than the peak needs only cost more; on-demand opens its own.
    knobs = product(modes, architectures, TASK_SIZES, FLUSH_INTERVALS, publishing)
    for mode, arch, (vcpu, gb), flush, metrics in knobs:
        candidate = replace(
            base,
            stream_mode=mode,
            shards=needed if mode == "provisioned" else None,
            architecture=arch,
            fargate_tasks=1,
            fargate_vcpu=vcpu,
            fargate_gb=gb,
            flush_interval_seconds=flush,
            consumer_metrics=metrics,
            kcl_metrics_level="NONE",
            container_insights=False,
            lambda_platform_logs=False,
            daemon_info_logs=False,
        )
        if gb * 1024 >= task_mib(candidate) and vcpu >= min_vcpu:
            yield candidate


def _key(line: Line) -> tuple[str, str]:
    return line.service, line.item
