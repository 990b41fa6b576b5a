"""Every CloudWatch metric this project publishes: one catalogue for the code, the dashboard and the alarms.

The consumer and the authorizer publish only what is listed here (their tests check it), and
tests/deploy checks that every metric the dashboard and the alarms in `ecs/` reference is listed
(name, namespace, dimensions), so the three cannot drift. Every metric carries the `Environment`
dimension; the others listed are low-cardinality on purpose: a metric per user or IP would cost
$0.30 a month each.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "CompliCal/Usage"
ENVIRONMENT = "Environment"
CONSUMER, AUTHORIZER = "consumer", "authorizer"
# How a publisher folds the samples of one metric, dimensions and minute before sending them:
SUM = "sum"  # a count: one value, the total (read with Sum)
MAXIMUM = "maximum"  # a gauge such as ActiveUsers: the highest value seen (read with Maximum)
DISTRIBUTION = "distribution"  # values and their counts, so percentiles work (p50, p99)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str  # a CloudWatch StandardUnit
    publisher: str  # CONSUMER or AUTHORIZER
    meaning: str
    dimensions: tuple[str, ...] = ()  # besides Environment
    folding: str = SUM

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return (ENVIRONMENT, *self.dimensions)


METRICS = (
    Metric("ApiCalls", "Count", CONSUMER, "API_CALL events counted, at their event minute"),
    Metric("AuthFailures", "Count", CONSUMER, "API_AUTH_FAILED events counted, at their event minute"),
    Metric("RateLimited", "Count", CONSUMER, "API_RATE_LIMITED events counted, at their event minute"),
    Metric(
        "ActiveUsers",
        "Count",
        CONSUMER,
        "distinct users with calls in the hour (Maximum, at the hour)",
        folding=MAXIMUM,
    ),
    Metric("RecordsProcessed", "Count", CONSUMER, "stream records read by the record processors"),
    Metric(
        "DeadLetters", "Count", CONSUMER, "records or log events sent to the dead-letter queue", ("Reason",)
    ),
    Metric(
        "UncountedRecords",
        "Count",
        CONSUMER,
        "dead letters but access-log lines: usage records, batches and envelopes not counted",
    ),
    Metric(
        "RejectedAccessLogLines",
        "Count",
        CONSUMER,
        "access-log lines dead-lettered alone (a caller may cause one): their own alarm threshold",
    ),
    Metric(
        "ProcessingLatency",
        "Milliseconds",
        CONSUMER,
        "event timestamp to durably counted, per event",
        folding=DISTRIBUTION,
    ),
    Metric(
        "IteratorAge",
        "Milliseconds",
        CONSUMER,
        "how far a shard's reader is behind the stream's tip",
        folding=DISTRIBUTION,
    ),
    Metric("FlushRetries", "Count", CONSUMER, "flush attempts that failed and were retried"),
    Metric(
        "FlushFailures", "Count", CONSUMER, "flushes given up after WRITE_RETRY_SECONDS (the task restarts)"
    ),
    Metric(
        "UnmeteredRequests",
        "Count",
        CONSUMER,
        "an hour's access-log requests no usage event counts, published once when the hour is final",
    ),
    Metric(
        "MeteringCompleteness",
        "Percent",
        CONSUMER,
        "an hour's metered share of the requests the authorizer saw, published with UnmeteredRequests",
        folding=MAXIMUM,
    ),
    Metric("AlertsFired", "Count", CONSUMER, "alert episodes opened (FIRING), by rule", ("Rule",)),
    Metric("Decisions", "Count", AUTHORIZER, "authorizer decisions, by outcome", ("Outcome",)),
    Metric("EventsSent", "Count", AUTHORIZER, "usage events the producer put on the stream"),
    Metric("EventsRetried", "Count", AUTHORIZER, "usage events put again after Kinesis throttled them"),
    Metric("EventsFailed", "Count", AUTHORIZER, "usage events refused or lost with a failed call"),
    Metric("EventsDropped", "Count", AUTHORIZER, "usage events dropped: the producer's queue was full"),
    Metric("RateLimitFailOpen", "Count", AUTHORIZER, "requests allowed because the rate-limit table failed"),
    Metric(
        "HandlerLatency",
        "Milliseconds",
        AUTHORIZER,
        "the authorizer's time per request",
        folding=DISTRIBUTION,
    ),
)
BY_NAME = {metric.name: metric for metric in METRICS}


def published_by(publisher: str) -> dict[str, Metric]:
    return {metric.name: metric for metric in METRICS if metric.publisher == publisher}
