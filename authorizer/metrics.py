"""What the authorizer measures, behind one small interface; `contract.cloudwatch` names the metrics.

`Authorizer` adds a request's metrics as it goes and flushes them once at its end. `Tally` keeps
counts in memory (tests, `metering simulate`); `EmfMetrics` is what the Lambda uses: CloudWatch
Embedded Metric Format on stdout, which Lambda's log capture turns into metrics, so the request
path makes no metrics API call.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

from aws_lambda_powertools.metrics import EphemeralMetrics

from authorizer.producer import ProducerStats
from contract.cloudwatch import AUTHORIZER, NAMESPACE, Metric, published_by

_OURS = published_by(AUTHORIZER)  # a name missing from the catalogue fails at import
DECISIONS = _OURS["Decisions"]  # dimension: the decision's outcome
HANDLER_LATENCY = _OURS["HandlerLatency"]
RATE_LIMIT_FAIL_OPEN = _OURS["RateLimitFailOpen"]
EVENTS_SENT = _OURS["EventsSent"]
EVENTS_RETRIED = _OURS["EventsRetried"]
EVENTS_FAILED = _OURS["EventsFailed"]
EVENTS_DROPPED = _OURS["EventsDropped"]


class Metrics(Protocol):
    def add(self, metric: Metric, value: float = 1.0, dimensions: tuple[str, ...] = ()) -> None:
        """`dimensions`: the values of `metric.dimensions`, in order (Environment is implied)."""

    def flush(self) -> None:
        """Publish what was added since the last flush: once per request."""


class Tally:
    """Totals per metric name, dimensions folded."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, float] = defaultdict(float)

    def add(self, metric: Metric, value: float = 1.0, dimensions: tuple[str, ...] = ()) -> None:
        self.counts[metric.name] += value

    def flush(self) -> None:
        return None


class EmfMetrics:
    """One EMF document per dimension set and flush, built and printed by Powertools.

    An EMF directive's dimension sets apply to every metric it lists, so `Decisions` (Environment,
    Outcome) cannot share a document with the Environment-only metrics: a request prints two lines.
    Each flush starts from new Powertools objects: nothing is kept between requests, not even when
    POWERTOOLS_METRICS_DISABLED turns printing off.
    """

    def __init__(self, environment: str) -> None:
        self._environment = environment
        self._documents: dict[tuple[tuple[str, str], ...], EphemeralMetrics] = {}

    def add(self, metric: Metric, value: float = 1.0, dimensions: tuple[str, ...] = ()) -> None:
        key = tuple(zip(metric.dimension_names, (self._environment, *dimensions), strict=True))
        if key not in self._documents:
            self._documents[key] = _document(dict(key))
        self._documents[key].add_metric(name=metric.name, unit=metric.unit, value=value)

    def flush(self) -> None:
        documents, self._documents = self._documents, {}
        for document in documents.values():
            document.flush_metrics()


def _document(dimensions: dict[str, str]) -> EphemeralMetrics:
    # service="": no `service` dimension whatever POWERTOOLS_SERVICE_NAME says; the catalogue's only.
    document = EphemeralMetrics(namespace=NAMESPACE, service="")
    for name, value in dimensions.items():
        document.add_dimension(name=name, value=value)
    return document


class ProducerDeltas:
    """The producer's cumulative counters as counts since the previous call.

    The producer sends from a background thread, so a request's own event is usually counted by
    a later request: deltas of the totals publish every send exactly once, whichever request
    sees it. What a container counts after its last request is never published.
    """

    def __init__(self) -> None:
        self._previous = _counters(ProducerStats(sent=0, failed=0, dropped=0, pending=0))

    def since_last(self, stats: ProducerStats) -> dict[Metric, int]:
        current = _counters(stats)
        deltas = {metric: count - self._previous[metric] for metric, count in current.items()}
        self._previous = current
        return {metric: delta for metric, delta in deltas.items() if delta}


def _counters(stats: ProducerStats) -> dict[Metric, int]:
    return {
        EVENTS_SENT: stats.sent,
        EVENTS_RETRIED: stats.retried,
        EVENTS_FAILED: stats.failed,
        EVENTS_DROPPED: stats.dropped,
    }
