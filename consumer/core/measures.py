"""What the consumer tells CloudWatch (pure): samples of what it did, folded per metric and minute.

`flush_samples` turns a durable flush into samples: the calls, auth failures and rate-limited calls
its GLOBAL minute items *applied* (a replay that finds them applied adds nothing: never doubled),
the hour's exact active users as the GLOBAL hour item now holds them, and each event's processing
latency. `MetricFolder` folds samples per metric, dimensions and minute as the catalogue says
(`contract.cloudwatch`): counts summed, gauges maximised, latencies kept as values and counts, and
renders them as `PutMetricData` datums or as Embedded Metric Format documents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.core.aggregate import ItemKey
from consumer.core.flush import Batch, ItemResult
from contract.cloudwatch import BY_NAME, DISTRIBUTION, ENVIRONMENT, MAXIMUM, NAMESPACE
from contract.table import ACTIVE_USERS, COUNTER_OF, GLOBAL, HOUR_PREFIX, MINUTE_PREFIX, bucket_start

Dimensions = tuple[tuple[str, str], ...]
_FoldKey = tuple[str, Dimensions, datetime]
# CloudWatch refuses data points older than two weeks: older events (a late re-drive) are counted
# in the table, not published.
MAX_AGE = timedelta(days=14) - timedelta(hours=1)
# PutMetricData takes at most 150 distinct values per datum and 1,000 datums per call; EMF at most
# 100 values per metric and 100 metrics per document.
MAX_DATUM_VALUES, MAX_DATUMS = 150, 1000
MAX_EMF_VALUES = 100
_USAGE_METRICS = {"calls": "ApiCalls", "authFailures": "AuthFailures", "rateLimited": "RateLimited"}
assert set(_USAGE_METRICS) == set(COUNTER_OF.values())


@dataclass(frozen=True, slots=True)
class Sample:
    metric: str  # a name of `contract.cloudwatch.METRICS`
    value: float
    at: datetime
    dimensions: Dimensions = ()
    count: int = 1  # how many observations of `value` (latencies)


def flush_samples(batch: Batch, results: Mapping[ItemKey, ItemResult], flushed_at: datetime) -> list[Sample]:
    """The samples of one durable flush of `batch`, whose writes returned `results`."""
    samples: list[Sample] = []
    applied_here = False
    for (pk, sk), result in results.items():
        if pk != GLOBAL:
            continue
        if sk.startswith(MINUTE_PREFIX) and result.applied:
            applied_here = True
            adds = batch.aggregate.items[(pk, sk)].adds
            at = bucket_start(sk)
            samples += [
                Sample(name, adds[counter], at)
                for counter, name in _USAGE_METRICS.items()
                if adds.get(counter)
            ]
        elif sk.startswith(HOUR_PREFIX) and ACTIVE_USERS in result.values:
            samples.append(Sample("ActiveUsers", int(result.values[ACTIVE_USERS]), bucket_start(sk)))
    if applied_here:  # a replay of a range counted before already published its latencies
        samples += latency_samples(batch.aggregate.event_seconds, flushed_at)
    return [sample for sample in samples if sample.at > flushed_at - MAX_AGE]


def latency_samples(event_seconds: Mapping[int, int], flushed_at: datetime) -> list[Sample]:
    """Each event's time from its timestamp (to the second's middle) to the flush that counted it."""
    now_ms = flushed_at.timestamp() * 1000
    return [
        Sample("ProcessingLatency", max(0, round(now_ms - second * 1000 - 500)), flushed_at, count=count)
        for second, count in event_seconds.items()
    ]


class MetricFolder:
    """Samples folded per metric, dimensions and minute, until rendered."""

    def __init__(self) -> None:
        self._scalars: dict[_FoldKey, float] = {}  # sums and maxima
        self._distributions: dict[_FoldKey, Counter[float]] = {}

    def __len__(self) -> int:
        return len(self._scalars) + len(self._distributions)

    def add(self, sample: Sample) -> None:
        key = (sample.metric, sample.dimensions, _minute(sample.at))
        folding = BY_NAME[sample.metric].folding
        if folding == DISTRIBUTION:
            self._distributions.setdefault(key, Counter())[_two_significant(sample.value)] += sample.count
        elif folding == MAXIMUM:
            self._scalars[key] = max(self._scalars.get(key, sample.value), sample.value)
        else:
            self._scalars[key] = self._scalars.get(key, 0.0) + sample.value * sample.count

    def _folds(self) -> Iterator[tuple[_FoldKey, Counter[float]]]:
        yield from ((key, Counter({value: 1})) for key, value in self._scalars.items())
        yield from self._distributions.items()

    def datums(self, environment: str) -> list[dict[str, Any]]:
        """`PutMetricData` MetricData entries, at most MAX_DATUM_VALUES values each."""
        datums = []
        for (metric, dimensions, minute), values in self._folds():
            for chunk in _chunks(sorted(values.items()), MAX_DATUM_VALUES):
                datums.append(
                    {
                        "MetricName": metric,
                        "Dimensions": [{"Name": n, "Value": v} for n, v in _all(environment, dimensions)],
                        "Timestamp": minute,
                        "Values": [value for value, _ in chunk],
                        "Counts": [float(count) for _, count in chunk],
                        "Unit": BY_NAME[metric].unit,
                    }
                )
        return datums

    def emf_documents(self, environment: str) -> list[dict[str, Any]]:
        """One Embedded Metric Format document per dimensions and minute, each metric's values listed.

        EMF has no counts: a latency observed n times is listed n times, at most MAX_EMF_VALUES per
        document, values drawn in proportion to their counts beyond that (percentiles stay close;
        sums and sample counts of distributions do not — the API mode keeps them exact).
        """
        grouped: dict[tuple[Dimensions, datetime], dict[str, list[float]]] = {}
        for (metric, dimensions, minute), values in self._folds():
            grouped.setdefault((dimensions, minute), {})[metric] = _proportional(values, MAX_EMF_VALUES)
        return [
            _emf(environment, dimensions, minute, metrics)
            for (dimensions, minute), metrics in grouped.items()
        ]


def _emf(
    environment: str, dimensions: Dimensions, minute: datetime, metrics: dict[str, list[float]]
) -> dict[str, Any]:
    names = _all(environment, dimensions)
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(minute.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[name for name, _ in names]],
                    "Metrics": [{"Name": metric, "Unit": BY_NAME[metric].unit} for metric in metrics],
                }
            ],
        }
    }
    document |= dict(names)
    document |= {metric: values[0] if len(values) == 1 else values for metric, values in metrics.items()}
    return document


def _all(environment: str, dimensions: Dimensions) -> Dimensions:
    return ((ENVIRONMENT, environment), *dimensions)


def _minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _two_significant(value: float) -> float:
    """Latencies to two significant digits (at most 5 % off): few distinct values per datum."""
    return float(f"{value:.2g}") if value else 0.0


def _proportional(values: Counter[float], limit: int) -> list[float]:
    """The values, each repeated by its count, scaled down to at most `limit` entries."""
    total = sum(values.values())
    if total <= limit:
        return [value for value, count in sorted(values.items()) for _ in range(count)]
    shares = {value: count * limit / total for value, count in values.items()}
    taken = {value: int(share) for value, share in shares.items()}
    for value in sorted(shares, key=lambda v: shares[v] - taken[v], reverse=True)[
        : limit - sum(taken.values())
    ]:
        taken[value] += 1  # largest remainders first
    return [value for value, count in sorted(taken.items()) for _ in range(count)]


def _chunks(items: list[tuple[float, int]], size: int) -> Iterator[list[tuple[float, int]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def every(datums: list[dict[str, Any]], size: int = MAX_DATUMS) -> Iterator[list[dict[str, Any]]]:
    """Datums in calls of at most `size` (PutMetricData's limit)."""
    for start in range(0, len(datums), size):
        yield datums[start : start + size]
