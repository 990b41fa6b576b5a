"""What a durable flush tells CloudWatch, and how samples fold into datums and EMF documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, ItemResult
from consumer.core.measures import (
    MAX_DATUM_VALUES,
    MAX_EMF_VALUES,
    MetricFolder,
    Sample,
    every,
    flush_samples,
)
from consumer.testing import encode, event
from contract.cloudwatch import BY_NAME, CONSUMER, ENVIRONMENT, NAMESPACE, published_by
from tests.emf import assert_valid_emf, parse_emf

AT = datetime(2026, 11, 24, 17, 52, 13, tzinfo=UTC)
FLUSHED = AT + timedelta(seconds=4)


def batch_of(*events: dict[str, Any]) -> Batch:
    aggregate = Aggregate()
    for payload in events:
        data = encode(payload)
        aggregate.add(decode_event(data, FLUSHED), data)
    return Batch(FlushRange("shardId-0", None, "001.1"), aggregate, len(events))


def results(batch: Batch, applied: bool, active_users: int = 1) -> dict[tuple[str, str], ItemResult]:
    written = {}
    for key, update in batch.aggregate.items.items():
        values: dict[str, Any] = dict(update.adds)
        if key == ("GLOBAL", "HOUR#2026-11-24T17"):
            values["activeUsers"] = active_users
        written[key] = ItemResult(applied, values)
    return written


def by_metric(samples: list[Sample]) -> dict[str, list[Sample]]:
    found: dict[str, list[Sample]] = {}
    for sample in samples:
        found.setdefault(sample.metric, []).append(sample)
    return found


def test_a_first_flush_publishes_its_counts_at_the_event_minute_its_active_users_and_latencies() -> None:
    batch = batch_of(
        event(at=AT), event(at=AT), event("API_AUTH_FAILED", at=AT, email=None, reason="MISSING_KEY")
    )
    samples = by_metric(flush_samples(batch, results(batch, applied=True, active_users=7), FLUSHED))
    minute = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
    assert [(s.value, s.at) for s in samples["ApiCalls"]] == [(2, minute)]
    assert [(s.value, s.at) for s in samples["AuthFailures"]] == [(1, minute)]
    assert "RateLimited" not in samples
    assert [(s.value, s.at) for s in samples["ActiveUsers"]] == [(7, datetime(2026, 11, 24, 17, tzinfo=UTC))]
    (latency,) = samples["ProcessingLatency"]
    assert (latency.value, latency.count, latency.at) == (3500, 3, FLUSHED)  # 17:52:13.5 -> 17:52:17


def test_a_replay_that_finds_its_items_applied_publishes_no_count_again() -> None:
    """Never doubled: counts and latencies go out with the flush that applied them, only."""
    batch = batch_of(event(at=AT), event("API_RATE_LIMITED", at=AT, reason="RATE_LIMIT_SECOND"))
    samples = by_metric(flush_samples(batch, results(batch, applied=False, active_users=3), FLUSHED))
    assert set(samples) == {"ActiveUsers"}  # a gauge (Maximum): publishing it again changes nothing
    assert samples["ActiveUsers"][0].value == 3


def test_events_older_than_cloudwatch_accepts_are_counted_not_published() -> None:
    """A late re-drive (20 days): counted in the table; CloudWatch refuses points over two weeks old."""
    batch = batch_of(event(at=AT - timedelta(days=20)))
    samples = by_metric(flush_samples(batch, results(batch, applied=True), FLUSHED))
    assert set(samples) == {"ProcessingLatency"}  # time-stamped at the flush: published
    assert samples["ProcessingLatency"][0].value >= 20 * 86_400_000


def test_counts_are_summed_gauges_maximised_latencies_kept_with_their_counts() -> None:
    folder = MetricFolder()
    for sample in (
        Sample("ApiCalls", 5, AT),
        Sample("ApiCalls", 7, AT + timedelta(seconds=30)),  # the same minute
        Sample("ApiCalls", 1, AT + timedelta(minutes=1)),
        Sample("ActiveUsers", 4, AT),
        Sample("ActiveUsers", 9, AT),
        Sample("ActiveUsers", 6, AT),
        Sample("ProcessingLatency", 1234, AT, count=3),
        Sample("ProcessingLatency", 1236, AT, count=2),  # 1,200 to two significant digits, too
        Sample("ProcessingLatency", 98, AT),
        Sample("DeadLetters", 2, AT, (("Reason", "NOT_JSON"),)),
    ):
        folder.add(sample)
    datums = {
        (d["MetricName"], tuple((x["Name"], x["Value"]) for x in d["Dimensions"]), d["Timestamp"].minute): d
        for d in folder.datums("prod")
    }
    env = (("Environment", "prod"),)
    assert datums[("ApiCalls", env, 52)]["Values"] == [12] and datums[("ApiCalls", env, 53)]["Values"] == [1]
    assert datums[("ActiveUsers", env, 52)]["Values"] == [9]
    latency = datums[("ProcessingLatency", env, 52)]
    assert dict(zip(latency["Values"], latency["Counts"], strict=True)) == {98: 1, 1200: 5}
    assert latency["Unit"] == "Milliseconds"
    assert datums[("DeadLetters", (*env, ("Reason", "NOT_JSON")), 52)]["Values"] == [2]


@given(st.lists(st.integers(0, 10_000_000), min_size=1, max_size=2000))
def test_a_datum_never_holds_more_values_than_cloudwatch_takes(latencies: list[int]) -> None:
    folder = MetricFolder()
    for latency in latencies:
        folder.add(Sample("ProcessingLatency", latency, AT))
    datums = folder.datums("prod")
    assert all(len(d["Values"]) == len(d["Counts"]) <= MAX_DATUM_VALUES for d in datums)
    assert sum(sum(d["Counts"]) for d in datums) == len(latencies)
    assert all(len(call) <= 1000 for call in every(datums * 3))


def test_emf_documents_are_valid_emf_with_the_catalogue_names_units_and_dimensions() -> None:
    folder = MetricFolder()
    now = datetime.now(UTC)
    for metric in ("ApiCalls", "RecordsProcessed", "FlushRetries"):
        folder.add(Sample(metric, 3, now))
    for latency in range(500):
        folder.add(Sample("ProcessingLatency", latency * 10, now, count=latency % 7 + 1))
    folder.add(Sample("DeadLetters", 1, now, (("Reason", "OVERSIZE"),)))
    documents = [parse_emf(orjson.dumps(d).decode()) for d in folder.emf_documents("prod")]
    assert len(documents) == 2  # one per dimension set
    ours = published_by(CONSUMER)
    for document in documents:
        assert_valid_emf(document, now.timestamp() * 1000)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE and document[ENVIRONMENT] == "prod"
        for metric in directive["Metrics"]:
            assert metric["Unit"] == ours[metric["Name"]].unit
            assert directive["Dimensions"] == [list(BY_NAME[metric["Name"]].dimension_names)]
    latencies = next(d["ProcessingLatency"] for d in documents if "ProcessingLatency" in d)
    assert len(latencies) == MAX_EMF_VALUES  # drawn in proportion to their counts
