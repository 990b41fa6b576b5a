"""`metering cost`: volumes parse, the write model and each line's formula hold on hand-checked
numbers, the model matches what bench/writes.py measured, and replay is kept."""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

from consumer.settings import ConsumerSettings
from contract.cloudwatch import BY_NAME
from metering import cli, cost
from metering.commands.cost import add_parser, inputs_from
from metering.errors import USAGE_ERROR, CommandError

# Version-1 records, one event of 420 B each: the arithmetic of the Kinesis lines is easiest to follow.
SMALL = cost.CostInputs(calls_per_month=1_000_000, events_per_record=1, bytes_per_record=420)
TEN_M = 10_000_000 / cost.SECONDS_PER_MONTH  # events/s at 10M calls a month
# Usage batch v2 at the peak: 25 events a record, 95 B an event (BENCHMARKS.md).
BATCHED = cost.CostInputs()  # the model's defaults are the producer's: 25 events, 2,375 B a record
V1 = replace(BATCHED, events_per_record=1, bytes_per_record=420)
ROOT = Path(__file__).resolve().parents[2]


def _lines(lines: list[cost.Line]) -> dict[str, cost.Line]:
    return {line.item: line for line in lines}


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="metering")
    add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(["cost", *argv])
    handler = args.handler
    code: int = handler(args, ConsumerSettings.from_env({}))
    return code


# --- volumes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ("10M", 10_000_000),
        ("10m", 10_000_000),
        ("250k", 250_000),
        ("250K", 250_000),
        ("1.5M", 1_500_000),
        ("2B", 2_000_000_000),
        ("10000000", 10_000_000),
        ("10_000_000", 10_000_000),
        ("1,000,000", 1_000_000),
        (" 42 ", 42),
    ],
)
def test_volumes_read_as_calls(text: str, calls: int) -> None:
    """Suffixes k, M and B multiply; plain integers (with _ or , separators) are taken as they are."""
    assert cost.parse_volume(text) == calls


@pytest.mark.parametrize("text", ["", "M", "10x", "-5", "0", "0k", "1.2345k", "1e6", "ten"])
def test_a_volume_that_is_not_a_positive_whole_number_is_refused(text: str) -> None:
    """Anything but a positive whole number of calls is a ValueError naming the text."""
    with pytest.raises(ValueError):
        cost.parse_volume(text)


# --- the write model ------------------------------------------------------------------------


def test_buckets_touched_in_a_window_run_from_the_events_to_the_buckets_it_spans() -> None:
    """A dense stream touches every bucket the window spans (1 + window/bucket on average); a sparse
    one about one bucket per event; a window as long as the bucket always spans two."""
    assert cost.touched(1e6, 5, 60) == pytest.approx(1 + 5 / 60)
    assert cost.touched(1e-6, 5, 60) == pytest.approx(5e-6, rel=1e-3)
    assert cost.touched(1e6, 60, 60) == pytest.approx(2.0)
    assert cost.touched(0.0, 5, 60) == 0.0


def test_a_busy_user_costs_each_of_its_items_once_per_flush() -> None:
    """One user calling 100 times a second, 5 s flushes: TOTAL, DAY and MONTH once, the hour (which
    holds the user's minutes) as often as the window crosses its edge; the address and the archive
    page with it."""
    traffic = cost.Traffic(
        100.0, users=1, shards=1, keyless_share=0.0, rate_limited_share=0.0, access_logs=False
    )
    writes = cost.writes_per_flush(traffic)
    for kind in ("USER TOTAL", "USER DAY", "USER MONTH", "FLUSH intent"):
        assert writes[kind] == pytest.approx(1.0)
    assert "USER MINUTE" not in writes
    assert (
        writes["USER HOUR"]
        == writes["IP HOUR"]
        == writes["ARCHIVE page"]
        == pytest.approx(1 + 5 / 3600, rel=1e-3)
    )
    assert writes["KEY HOUR"] == 0.0
    assert "ENDPOINT MINUTE" not in writes


def test_a_lone_event_writes_every_item_it_touches() -> None:
    """At 10M calls a month from 10,000 users each event is alone in its user's flush: its four user
    items, its address, its archive page; the keys-only index only the items it creates, where an
    index projecting ALL (tables from before) copied every bucket item's write."""
    traffic = cost.Traffic(TEN_M, users=10_000, flush_interval_seconds=5.0)
    estimate = cost.writes_per_event(traffic)
    user_and_address = sum(
        estimate.requests_by_kind[kind] for kind in (*cost.USER_KINDS, "IP HOUR", "ARCHIVE page")
    )
    assert user_and_address == pytest.approx(6.0, rel=0.02)
    copied = cost.writes_per_event(traffic, "all")
    assert copied.index_units_by_kind.keys().isdisjoint(cost.NOT_IN_INDEX)
    outside = sum(units for kind, units in copied.table_units_by_kind.items() if kind in cost.NOT_IN_INDEX)
    assert copied.index_units == pytest.approx(copied.table_units - outside)
    created = cost.created_per_second(traffic)
    assert estimate.index_units == pytest.approx(sum(created.values()) / TEN_M)
    assert estimate.index_units < copied.index_units / 2


def test_the_high_rate_meets_100_writes_per_1000_events_from_a_10_s_flush() -> None:
    """10,000 events/s from 1,000 users on 2 shards: 5 s flushes write ~136 per 1,000 events, 10 s ~73."""
    writes = {
        interval: cost.writes_per_event(
            cost.Traffic(10_000.0, 1_000, flush_interval_seconds=interval)
        ).requests
        for interval in (5.0, 10.0)
    }
    assert writes[5.0] * 1000 == pytest.approx(136.4, abs=1)
    assert writes[10.0] * 1000 == pytest.approx(73.1, abs=1)


def test_a_keys_only_index_is_written_only_when_an_item_is_created() -> None:
    """Updates of a bucket item leave a keys-only entry alone: far fewer index writes than ALL."""
    traffic = cost.Traffic(TEN_M, users=100, flush_interval_seconds=60.0)
    every = cost.writes_per_event(traffic, "all").index_units
    created = cost.writes_per_event(traffic, "keys-only").index_units
    assert created < every / 30
    created_by_kind = cost.writes_per_event(traffic, "keys-only").index_units_by_kind
    assert "USER MINUTE" not in created_by_kind  # a user's minutes: counters of its hour item
    hours = 100 * cost.hit(TEN_M * 0.995 / 100, 3600) / 3600 / TEN_M  # a user's hour, new once an hour
    assert created_by_kind["USER HOUR"] == pytest.approx(hours)


def test_a_users_hour_item_grows_with_its_minutes_and_bills_by_its_size() -> None:
    """At 10M calls a month a user calls in a few minutes an hour: one unit. At 10 calls a second it
    counts calls (and refusals) in every minute, and its last minutes' updates cost two units."""
    quiet, busy = cost.Traffic(TEN_M, 1_000), cost.Traffic(10_000.0, 1_000)
    assert (
        cost.user_hour_bytes(quiet, 60)
        < cost.user_hour_bytes(quiet, 0) + 20 * cost.MEASURED_MINUTE_COUNTER_BYTES
    )
    assert cost.user_hour_units(quiet) == 1.0
    assert cost.user_hour_bytes(busy, 60) == pytest.approx(
        cost.MEASURED_ITEM_BYTES["USER HOUR"] + 120 * cost.MEASURED_MINUTE_COUNTER_BYTES, rel=0.01
    )
    assert 1.0 < cost.user_hour_units(busy) < 1.5
    assert cost.item_units(busy, "USER HOUR") == cost.user_hour_units(busy)


def test_an_archive_page_bills_a_unit_per_started_kilobyte() -> None:
    """A page holds its caller's events of one flush; 1,000 users at 10,000/s put ~50 in a 5 s page."""
    assert cost.page_units(cost.Traffic(TEN_M, 100)) == 1.0
    busy = cost.Traffic(10_000.0, 1_000, keyless_share=0.0)
    events = 50.0
    assert cost.page_units(busy) == math.ceil(
        (cost.MEASURED_PAGE_BYTES + cost.MEASURED_PAGE_EVENT_BYTES * events) / 1024
    )


def test_storage_keeps_buckets_for_their_ttl_and_totals_for_ever() -> None:
    """GLOBAL keeps 10,080 minutes and 168 hours; each user one TOTAL; the archive 90 days of pages."""
    kept = cost.items_kept(cost.Traffic(TEN_M, users=100))
    assert kept["GLOBAL MINUTE"] == 10_080
    assert kept["GLOBAL HOUR"] == 168
    assert kept["USER TOTAL"] == 100
    assert kept["USER HOUR"] == pytest.approx(100 * 168, rel=0.01)  # each user calls every hour
    pages = cost.writes_per_event(cost.Traffic(TEN_M, 100)).requests_by_kind["ARCHIVE page"] * TEN_M
    assert kept["ARCHIVE page"] == pytest.approx(pages * 90 * 86_400)
    assert cost.storage_gb(cost.Traffic(TEN_M, 100)) < cost.storage_gb(cost.Traffic(TEN_M, 100), "all")


# What `.venv/bin/python -m bench.writes` measured with the production DynamoDBSink (BENCHMARKS.md):
# (events/s, users, flush interval) -> write requests per 1,000 events, every item kind.
MEASURED_WRITES = {
    (TEN_M, 100, 5.0): 6_842.3,
    (TEN_M, 100, 60.0): 2_640.5,
    (TEN_M, 1_000, 5.0): 7_352.2,
    (TEN_M, 1_000, 60.0): 5_542.3,
    (10_000.0, 1_000, 5.0): 137.1,
    (10_000.0, 1_000, 10.0): 73.2,
}


@pytest.mark.parametrize(("scenario", "measured"), MEASURED_WRITES.items())
def test_the_model_predicts_what_the_real_sink_wrote(
    scenario: tuple[float, int, float], measured: float
) -> None:
    """Within 10 % of bench/writes.py's count of the requests the production sink sent."""
    rate, users, interval = scenario
    modelled = (
        cost.writes_per_event(cost.Traffic(rate, users, flush_interval_seconds=interval)).requests * 1000
    )
    assert modelled == pytest.approx(measured, rel=0.10)


# --- each line's formula --------------------------------------------------------------------


def test_provisioned_kinesis_bills_shard_hours_put_units_and_extended_retention() -> None:
    """3 shards x 730 h at $0.015 and $0.020; 1M records of 420 B are 1M PUT units at $0.014/M."""
    lines = _lines(cost.kinesis_lines(replace(SMALL, shards=3), cost.PRICES))
    assert lines["3 shards"].quantity == 2190
    assert lines["3 shards"].monthly_usd == pytest.approx(32.85)
    assert lines["PUT payload units (1,000,000 usage records of 420 B)"].monthly_usd == pytest.approx(0.014)
    assert lines["PUT payload units (10,000 access-log records)"].quantity == pytest.approx(0.01)
    assert lines["extended retention (to 7 d)"].monthly_usd == pytest.approx(43.80)


def test_packing_events_divides_records_and_counts_a_put_unit_per_started_25_kb() -> None:
    """100 events in a 40,000 B record: 10,000 records of 2 PUT units each."""
    inputs = replace(SMALL, events_per_record=100, bytes_per_record=40_000)
    lines = _lines(cost.kinesis_lines(inputs, cost.PRICES))
    assert lines["PUT payload units (10,000 usage records of 40,000 B)"].quantity == pytest.approx(0.02)


def test_retention_of_one_day_has_no_extended_line_and_beyond_seven_days_is_long_term() -> None:
    """24 h is included; days 8-10 are long-term retention, at $0.023 per GB-month."""
    one_day = _lines(cost.kinesis_lines(replace(SMALL, retention_days=1), cost.PRICES))
    assert "extended retention (to 7 d)" not in one_day
    ten_days = _lines(cost.kinesis_lines(replace(SMALL, retention_days=10), cost.PRICES))
    logs = 10_000 * cost.log_record_bytes(SMALL)
    daily_gb = (1_000_000 * 420 + logs) / cost.GIB / (730 / 24)
    long_term = ten_days["long-term retention (> 7 d)"]
    assert long_term.quantity == pytest.approx(3 * daily_gb)
    assert long_term.monthly_usd == pytest.approx(3 * daily_gb * 0.023)


def test_on_demand_kinesis_opens_four_shards_and_bills_stream_hours_and_records_rounded_to_1_kb() -> None:
    """$0.04 a stream-hour; 1M records of 420 B bill as 1M KiB in at $0.08/GB, their bytes out at
    $0.04/GB, the days held beyond 24 h at $0.10/GB-month; a child per shard (4 at first)."""
    inputs = replace(SMALL, stream_mode="on-demand", access_logs=False)
    lines = _lines(cost.kinesis_lines(inputs, cost.PRICES))
    assert lines["on-demand stream"].quantity == 730
    assert lines["data in (records rounded up to 1 KB)"].quantity == pytest.approx(
        1_000_000 * 1024 / cost.GIB
    )
    assert lines["data out (one consumer)"].quantity == pytest.approx(420_000_000 / cost.GIB)
    assert lines["on-demand stream"].monthly_usd == pytest.approx(29.20)
    assert lines["data in (records rounded up to 1 KB)"].monthly_usd == pytest.approx(
        1_000_000 * 1024 / cost.GIB * 0.08
    )
    assert lines["data out (one consumer)"].monthly_usd == pytest.approx(420_000_000 / cost.GIB * 0.04)
    held = lines["extended retention (to 7 d)"]
    assert held.quantity == pytest.approx(420_000_000 / cost.GIB / (730 / 24) * 6)
    assert held.monthly_usd == pytest.approx(held.quantity * 0.10)
    assert inputs.stream_shards() == 4


def test_shards_follow_the_per_shard_write_quota_at_the_peak() -> None:
    """2,000 calls/s one event per record, plus the access-log records, need 3 shards; 25 per record, 1."""
    assert cost.shards_needed(V1) == 3
    assert cost.shards_needed(replace(V1, access_logs=False)) == 2
    assert cost.shards_needed(BATCHED) == 1
    assert BATCHED.stream_shards() == 1 and replace(BATCHED, shards=2).stream_shards() == 2


def test_fargate_bills_vcpu_and_memory_hours_at_the_architecture_s_price() -> None:
    """2 tasks of 0.5 vCPU / 1 GB on arm64: 730 vCPU-h x $0.03238 and 1,460 GB-h x $0.00356."""
    inputs = replace(SMALL, fargate_tasks=2, fargate_vcpu=0.5, fargate_gb=1.0, architecture="arm64")
    vcpu, memory = cost.fargate_lines(inputs, cost.PRICES)
    assert (vcpu.quantity, memory.quantity) == (730, 1460)
    assert vcpu.monthly_usd == pytest.approx(23.6374)
    assert memory.monthly_usd == pytest.approx(5.1976)
    x86 = cost.fargate_lines(replace(inputs, architecture="x86_64"), cost.PRICES)
    assert sum(line.monthly_usd or 0 for line in x86) == pytest.approx(730 * 0.04048 + 1460 * 0.004445)


def test_a_task_holds_the_jvm_and_a_child_per_shard_it_holds() -> None:
    """Measured: 79 + 192 + 202 MiB a shard; three shards in a 0.5 GB task is a warning."""
    assert cost.task_mib(replace(BATCHED, shards=2)) == 79 + 192 + 2 * 202
    assert cost.task_mib(replace(BATCHED, shards=2, fargate_tasks=2)) == 79 + 192 + 202
    small = cost.breakdown(replace(BATCHED, shards=3, fargate_gb=0.5))
    assert any("0.5 GB task" in warning for warning in small.warnings)


def test_consumer_writes_come_from_the_model_or_a_given_figure_and_the_kcl_s_schedule() -> None:
    """A given figure replaces the model (table only); the KCL checkpoints each flush and renews leases."""
    inputs = replace(SMALL, shards=1, flush_interval_seconds=5.0, writes_per_1000_events=250)
    analytics, kcl, reads = cost.consumer_dynamodb_lines(inputs, cost.PRICES)
    assert analytics.quantity == pytest.approx(0.25)
    assert analytics.monthly_usd == pytest.approx(0.15625)
    assert kcl.quantity == pytest.approx(2_628_000 * (1 / 5 + 1 / (10 / 3 - 0.025)) / 1e6)
    assert reads.quantity == pytest.approx(2_628_000 / 5 / 1e6)
    modelled = _lines(cost.consumer_dynamodb_lines(replace(inputs, writes_per_1000_events=None), cost.PRICES))
    table, index = cost.analytics_writes(replace(inputs, writes_per_1000_events=None))
    assert [line.quantity for line in modelled.values()][:2] == pytest.approx([table, index])


def test_authorizer_tables_cost_a_write_per_call_and_cached_key_reads() -> None:
    """Key reads and last-used writes are capped by calls, else one per user, container and TTL."""
    few = _lines(cost.shared_dynamodb_lines(replace(SMALL, users=1, warm_containers=1), cost.PRICES))
    assert few["rate-limit UpdateItem (one per call)"].monthly_usd == pytest.approx(0.625)
    assert few["key reads (strongly consistent, cached 30 s)"].quantity == pytest.approx(2_628_000 / 30 / 1e6)
    assert few["key last-used writes"].quantity == pytest.approx(2_628_000 / 300 / 1e6)
    many = _lines(cost.shared_dynamodb_lines(replace(SMALL, users=10_000), cost.PRICES))
    assert many["key reads (strongly consistent, cached 30 s)"].quantity == pytest.approx(1.0)
    assert many["key last-used writes"].quantity == pytest.approx(1.0)


def test_lambda_bills_the_authorizer_and_the_usage_endpoint() -> None:
    """1M calls of 5 ms at 512 MB: $0.20 and 2,500 GB-s; GET /v1/usage 100k of 50 ms at 256 MB."""
    requests, duration, usage, usage_duration = cost.lambda_lines(SMALL, cost.PRICES)
    assert requests.monthly_usd == pytest.approx(0.20)
    assert duration.quantity == pytest.approx(2500)
    assert duration.monthly_usd == pytest.approx(2500 * 0.00001667)
    assert usage.quantity == pytest.approx(0.1)
    assert usage_duration.quantity == pytest.approx(100_000 * 0.05 * 0.25)
    edge = cost.lambda_lines(SMALL, cost.PRICES, edge=True)[:2]
    assert [line.quantity for line in edge] == pytest.approx([1.0, 1_000_000 * 0.005 * 128 / 1024])
    assert [line.monthly_usd for line in edge] == pytest.approx([0.60, 625 * 0.00005001])


def test_custom_metrics_are_counted_from_the_catalogue_and_its_dimension_values() -> None:
    """15 published every hour: 9 of the consumer's, Decisions by 4 outcomes, HandlerLatency and
    EventsSent; the failure metrics only for the hours they appear in."""
    assert set(BY_NAME) >= cost.INCIDENT_METRICS
    steady, incidents = cost.custom_metrics(SMALL)
    assert steady == 15
    values = sum(len(cost.metric_values(name)) for name in cost.INCIDENT_METRICS)
    assert incidents == pytest.approx(values * 24 / 730)
    assert cost.custom_metrics(SMALL, consumer=False)[0] == 6


def test_cloudwatch_as_deployed_adds_kcl_metrics_container_insights_and_info_logs() -> None:
    """SUMMARY: 25 metrics and 2 PutMetricData calls per task every 10 s; Container Insights' metrics;
    the daemon's INFO lines (~20 B/s for 2 shards); Lambda's platform lines; the consumer's calls."""
    inputs = replace(cost.AS_DEPLOYED, calls_per_month=1_000_000)
    lines = _lines(cost.cloudwatch_lines(inputs, cost.PRICES))
    assert lines["KCL metrics (SUMMARY, 25)"].monthly_usd == pytest.approx(7.5)
    assert lines["KCL PutMetricData calls"].quantity == pytest.approx(2 * 262_800 * 2 / 1000)
    assert lines["Container Insights metrics (30)"].monthly_usd == pytest.approx(9.0)
    daemon_log_gb = cost.MEASURED_DAEMON_LOG_BYTES_PER_SECOND * 2_628_000 / cost.GIB
    assert lines["KCL daemon INFO log lines"].quantity == pytest.approx(daemon_log_gb)
    assert lines["Lambda START/END/REPORT lines"].quantity == pytest.approx(300_000_000 / cost.GIB)
    assert lines["consumer PutMetricData calls"].quantity == pytest.approx(2 * 87_600 / 1000)
    assert lines["alarms (14, over 17 metrics)"].monthly_usd == pytest.approx(1.7)
    recommended = _lines(cost.cloudwatch_lines(replace(BATCHED, calls_per_month=1_000_000), cost.PRICES))
    assert "consumer EMF lines" in recommended
    assert not any(item.startswith(("KCL", "Container", "Lambda START")) for item in recommended)


def test_the_alarm_counts_are_those_of_the_monitoring_stack() -> None:
    """ecs/monitoring.yaml: one price per metric an alarm reads."""
    template = (ROOT / "ecs" / "monitoring.yaml").read_text()
    assert len(re.findall(r"Type: AWS::CloudWatch::Alarm\b", template)) == cost.ALARMS
    assert len(re.findall(r"^\s+MetricName:", template, re.MULTILINE)) == cost.ALARM_METRICS


def test_sqs_and_sns_bill_requests_and_publishes() -> None:
    """A dead letter is sent, received and deleted at $0.40 per million requests; $0.50 per million
    publishes."""
    sqs, sns = cost.messaging_lines(SMALL, cost.PRICES)
    assert sqs.quantity == pytest.approx(3_000 / 1e6)
    assert sns.quantity == pytest.approx(100 / 1e6)
    assert sqs.monthly_usd == pytest.approx(3_000 * 0.40 / 1e6)
    assert sns.monthly_usd == pytest.approx(100 * 0.50 / 1e6)


def test_point_in_time_recovery_bills_what_is_stored() -> None:
    """PITR: $0.20 per GB-month of the table's size."""
    pitr = _lines(cost.shared_dynamodb_lines(SMALL, cost.PRICES))["point-in-time recovery"]
    assert pitr.monthly_usd == pytest.approx(pitr.quantity * 0.20) and pitr.quantity > 0


def test_every_price_names_its_aws_page_and_the_date_it_was_read() -> None:
    """Each price has an AWS URL and a date and no note naming a file; none is left unfound now."""
    for name, price in cost.PRICES.named().items():
        assert price.source.startswith("https://aws.amazon.com/"), name
        assert price.as_of in {"2026-11-30", "2026-12-07"}, name
        assert price.usd is not None and price.note != cost.NOT_FOUND, name
        assert not re.search(r"\.md\b|\.\./|shared/|notes", price.note), (name, price.note)


def test_the_printed_report_names_no_file_outside_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the table nor the JSON report names a path (a source is an AWS page and a date)."""
    for argv in (["--calls-per-month", "10M"], ["--calls-per-month", "10M", "--json"]):
        assert _run(argv) == 0
        out = capsys.readouterr().out
        assert "../" not in out and "kcl-field-notes" not in out and "shared/notes" not in out
        assert "not found" not in out


# --- the 10M configurations, the alternatives and the search --------------------------------


def test_as_deployed_today_10m_calls_cost_far_more_than_the_design_said() -> None:
    """2 shards, 2 x86 tasks of 0.5 vCPU / 1 GB, 60 s flushes, the KCL's metrics, Container Insights."""
    deployed = cost.breakdown(replace(cost.AS_DEPLOYED, calls_per_month=10_000_000))
    assert deployed.total_usd == pytest.approx(162.95, abs=0.01)
    v1 = cost.breakdown(replace(cost.AS_DEPLOYED, calls_per_month=10_000_000, events_per_record=1))
    assert any("cannot take" in warning for warning in v1.warnings)  # v1 needs 3 shards at the peak


def test_the_recommended_configuration_meets_the_target_for_few_steady_users_only() -> None:
    """Batched records, 1 shard, 1 Graviton task, 60 s flushes: $84.57 at 100 steady users, $15.79
    of it the consumer's item writes; under $75 up to ~45 users. Not faked to pass: the gap is named."""
    assert cost.breakdown(BATCHED).total_usd == pytest.approx(84.57, abs=0.01)
    assert cost.breakdown(replace(BATCHED, users=45)).total_usd < cost.TARGET_USD
    assert cost.breakdown(replace(BATCHED, users=46)).total_usd > cost.TARGET_USD
    table, index = cost.analytics_writes(BATCHED)
    assert 10_000_000 * (table + index) * 0.625e-6 == pytest.approx(15.79, abs=0.01)


@pytest.mark.parametrize(
    "inputs",
    [
        cost.CostInputs(),
        BATCHED,
        replace(BATCHED, retention_days=1),
        replace(cost.AS_DEPLOYED, calls_per_month=250_000),
        cost.CostInputs(calls_per_month=250_000, stream_mode="on-demand"),
    ],
)
def test_the_cheapest_configuration_keeps_seven_days_of_stream(inputs: cost.CostInputs) -> None:
    """Whatever was asked, the answer keeps >= 7 days, takes the peak, fits the task's memory,
    and costs no more than asked."""
    cheapest = cost.cheapest_with_replay(inputs)
    chosen = cheapest.breakdown.inputs
    assert chosen.retention_days >= cost.REPLAY_DAYS
    on_demand = cost.breakdown(replace(chosen, stream_mode="on-demand", shards=None))
    assert on_demand.complete and cheapest.breakdown.total_usd <= on_demand.total_usd  # both priced
    assert chosen.stream_shards() >= cost.shards_needed(chosen)
    assert chosen.fargate_gb * 1024 >= cost.task_mib(chosen)
    asked = cost.breakdown(
        replace(inputs, retention_days=max(7, inputs.retention_days), stream_mode="provisioned", shards=None)
    )
    assert cheapest.breakdown.total_usd <= asked.total_usd + 1e-9
    assert cheapest.skipped == () and cheapest.breakdown.complete


def test_the_recommended_defaults_are_the_cheapest_found() -> None:
    """The search turns nothing the recommended configuration did not already choose."""
    cheapest = cost.cheapest_with_replay(BATCHED)
    assert cheapest.breakdown.total_usd == pytest.approx(cost.breakdown(BATCHED).total_usd)
    assert set(cheapest.changes) <= {"shards"}  # None (the peak's) made explicit


def test_alternatives_price_direct_writes_and_edge_rates() -> None:
    """Direct writes: every call writes its 10 items (and an index entry for each it creates);
    Lambda@Edge at its rates."""
    design, direct, edge = cost.alternatives(BATCHED)
    assert design.total_usd == cost.DESIGN_ESTIMATE_USD
    writes = direct.lines[0]
    assert cost.direct_writes_per_call(BATCHED) == pytest.approx(10.0, abs=0.1)
    assert writes.monthly_usd == pytest.approx(10 * cost.direct_writes_per_call(BATCHED) * 0.625)
    assert not direct.keeps_replay
    assert not any(line.service in {"Kinesis", "Fargate"} for line in direct.lines)
    assert edge.unpriced == () and direct.unpriced == ()
    assert {line.service for line in edge.lines} >= {"Lambda@Edge"}
    assert not any(line.item.startswith("authorizer") and line.service == "Lambda" for line in edge.lines)


# --- the command ------------------------------------------------------------------------------


def test_json_output_parses_and_holds_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints one document: the lines, the totals, the writes, the alternatives, the prices."""
    argv = ["--calls-per-month", "10M", "--events-per-record", "25", "--bytes-per-record", "2375", "--json"]
    assert _run(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"]["calls_per_month"] == 10_000_000
    assert report["inputs"]["shards"] == 1
    assert report["total_usd"] == pytest.approx(84.57, abs=0.01)
    assert math.isclose(
        sum(line["monthly_usd"] or 0 for line in report["lines"]), report["total_usd"], abs_tol=0.01
    )
    assert report["meets_target"] is False
    assert report["as_deployed_usd"] == pytest.approx(162.95, abs=0.01)
    assert report["writes_per_1000_events"]["USER HOUR"]["requests"] > 0
    assert report["cheapest_7_day_replay"]["total_usd"] == pytest.approx(84.57, abs=0.01)
    assert report["alternatives"][0]["name"] == "design document's estimate"
    assert report["prices"]["kinesis_shard_hour"]["source"].startswith("https://aws.amazon.com/")


def test_the_table_output_names_the_total_and_the_cheapest(capsys: pytest.CaptureFixture[str]) -> None:
    """The printed report shows the total, the design's $90, the writes, the cheapest 7-day configuration."""
    assert _run(["--calls-per-month", "250k", "--architecture", "x86", "--users", "10", "--as-deployed"]) == 0
    out = capsys.readouterr().out
    assert "Monthly cost at 250,000 calls" in out
    assert "estimated $90" in out
    assert "Consumer writes per 1,000 events" in out
    assert "Cheapest configuration keeping 7-day replay" in out


def test_options_set_the_inputs() -> None:
    """Each option lands in its field; x86 is x86_64; on-demand drops a starting point's shards."""
    parser = argparse.ArgumentParser(prog="metering")
    add_parser(parser.add_subparsers(required=True))
    argv = [
        "cost",
        "--calls-per-month",
        "1M",
        "--as-deployed",
        "--architecture",
        "x86",
        "--flush-interval",
        "10",
    ]
    inputs = inputs_from(parser.parse_args([*argv, "--metrics", "emf", "--index-projection", "keys-only"]))
    assert (inputs.architecture, inputs.flush_interval_seconds, inputs.fargate_tasks) == ("x86_64", 10.0, 2)
    assert (inputs.consumer_metrics, inputs.index_projection) == ("emf", "keys-only")
    on_demand = inputs_from(parser.parse_args([*argv, "--stream-mode", "on-demand"]))
    assert on_demand.shards is None and on_demand.stream_shards() == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calls-per-month", "10x"], "--calls-per-month"),
        (["--calls-per-month", "10M", "--users", "0"], "--users"),
        (["--calls-per-month", "10M", "--shards", "0"], "--shards"),
        (["--calls-per-month", "10M", "--retention-days", "400"], "--retention-days"),
        (["--calls-per-month", "10M", "--events-per-record", "0.5"], "--events-per-record"),
        (["--calls-per-month", "10M", "--bytes-per-record", "2000000"], "--bytes-per-record"),
        (["--calls-per-month", "10M", "--flush-interval", "120"], "--flush-interval"),
        (["--calls-per-month", "10M", "--stream-mode", "on-demand", "--shards", "4"], "--shards"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(argv: list[str], message: str) -> None:
    """A value that cannot work raises the command's usage error (exit 2) naming the option."""
    parser = argparse.ArgumentParser(prog="metering")
    add_parser(parser.add_subparsers(required=True))
    with pytest.raises(CommandError) as raised:
        inputs_from(parser.parse_args(["cost", *argv]))
    assert raised.value.exit_code == USAGE_ERROR
    assert message in str(raised.value)


def test_bad_values_exit_2_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """Through `metering.cli.main`, a bad volume exits 2 with one line on stderr."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["cost", "--calls-per-month", "lots"])
    assert exited.value.code == USAGE_ERROR
    assert capsys.readouterr().err.startswith("metering: --calls-per-month")


def test_as_deployed_is_what_the_consumer_template_deploys_by_default() -> None:
    """The model prices the template's defaults, not a copy of them that drifts."""
    template = cfn_yaml.load(str(Path(__file__).parents[2] / "ecs" / "consumer.yaml"))
    defaults = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    deployed = cost.AS_DEPLOYED
    assert int(defaults["ShardCount"]) == deployed.shards
    assert int(defaults["MinTasks"]) == deployed.fargate_tasks
    assert int(defaults["TaskCpu"]) / 1024 == deployed.fargate_vcpu
    assert int(defaults["TaskMemory"]) / 1024 == deployed.fargate_gb
    assert defaults["CpuArchitecture"].lower().replace("_", "") == deployed.architecture.replace("_", "")
    assert float(defaults["FlushIntervalSeconds"]) == deployed.flush_interval_seconds
    assert defaults["CloudWatchMetrics"] == deployed.consumer_metrics
