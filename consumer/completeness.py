"""Publishing each hour's completeness once it is final: `UnmeteredRequests` and
`MeteringCompleteness` in CloudWatch, `metering_unmetered_requests` and
`metering_completeness_ratio` on /metrics (docs/completeness.md).

`metering consume` runs one `CompletenessPublisher` beside the daemon. Every task computes the same
figures from the table (`reads.completeness`); a conditional put of the hour's
`RECONCILED` item, which keeps the figures, decides which task sends them to CloudWatch, so an hour
is published once however many tasks run or restart. A failing read or put is logged and tried
again at the next cycle: it never stops the consumer. Nothing is published until the readers have
reported how far behind they are (`IteratorAge`, so CLOUDWATCH_METRICS must not be `off`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer import logs
from consumer.core.completeness import HOUR, final_hours
from contract.cloudwatch import ENVIRONMENT, NAMESPACE
from contract.table import DAY_RETENTION, EXPIRES_AT, hour_sk, reconciled_key
from reads import Table
from reads.completeness import HourTotal, reconcile

LOOKBACK_HOURS = 24  # hours a (re)started task looks back for hours not yet published
BEHIND_WINDOW = timedelta(minutes=5)  # the IteratorAge samples that say how far the readers are behind
CLAIM_STALE = timedelta(minutes=5)  # a claim not published by then is another task's to take


class CompletenessPublisher(Collector):
    def __init__(
        self,
        table: Table,
        cloudwatch: Any,
        environment: str,
        *,
        after: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table, self._cloudwatch, self._environment = table, cloudwatch, environment
        self._after, self._clock = after, clock
        self._done: set[datetime] = set()  # hours published (by any task)
        self.latest: HourTotal | None = None  # the most recent final hour's figures
        self._log = logs.get("consumer.completeness")

    def cycle(self) -> None:
        """Publish every final hour not yet published; an AWS error leaves the rest to the next cycle.
        The readers' lag is only asked for when an hour may have become final (once an hour)."""
        try:
            now = self._clock()
            due = [
                h for h in final_hours(now, self._after, timedelta(0), LOOKBACK_HOURS) if h not in self._done
            ]
            behind = self._behind(now) if due else None
            if behind is None:  # nothing due, or no reader has reported lately: nothing is final
                return
            final = set(final_hours(now, self._after, behind, LOOKBACK_HOURS))
            for hour in due:
                if hour in final:
                    self._settle(hour, now)
        except (BotoCoreError, ClientError) as exc:
            self._log.warning("completeness_deferred", error=type(exc).__name__, detail=str(exc)[:300])

    def start(self, every_seconds: float) -> Callable[[], None]:
        """Cycle on a background thread every `every_seconds`; returns what stops it."""
        stopped = threading.Event()

        def loop() -> None:
            while True:
                try:
                    self.cycle()
                except Exception:  # a bug of ours: logged, and tried again; the consumer counts on
                    self._log.exception("completeness_failed")
                if stopped.wait(every_seconds):
                    return

        threading.Thread(target=loop, name="completeness", daemon=True).start()
        return stopped.set

    def collect(self) -> Iterator[GaugeMetricFamily]:
        latest = self.latest
        if latest is None:
            return
        yield GaugeMetricFamily(
            "metering_unmetered_requests",
            "Requests of the last final hour's access logs that no usage event counts (docs/completeness.md)",
            value=latest.unmetered,
        )
        if latest.ratio is not None:
            yield GaugeMetricFamily(
                "metering_completeness_ratio",
                "Share of the last final hour's requests the authorizer saw that a usage event counts",
                value=latest.ratio,
            )
        yield GaugeMetricFamily(
            "metering_completeness_hour_timestamp_seconds",
            "Start of the hour those two describe",
            value=latest.hour.timestamp(),
        )

    def _settle(self, hour: datetime, now: datetime) -> None:
        figures = reconcile(self._table, hour, hour + HOUR).of_hour(hour)
        if self._claim(figures, now):
            self._publish(figures, now)
            self._table.client.update_item(
                TableName=self._table.name,
                Key=reconciled_key(hour),
                UpdateExpression="SET publishedAt = :now",
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
            )
            log = self._log.info if figures.requests or figures.metered else self._log.debug
            log("completeness_published", hour=hour_sk(hour), requests=figures.requests,
                metered=figures.metered, explained=figures.explained, unmetered=figures.unmetered,
                unlogged=figures.unlogged)  # fmt: skip
        elif not self._published(hour):
            return  # another task is publishing it; if it died, the claim goes stale and is taken
        self._done.add(hour)
        if self.latest is None or hour >= self.latest.hour:
            self.latest = figures

    def _claim(self, figures: HourTotal, now: datetime) -> bool:
        """Take the hour to publish: no task has, or one did and died before publishing (its claim
        is over CLAIM_STALE old). The item keeps the figures (400 days)."""
        numbers = {
            "requests": figures.requests,
            "metered": figures.metered,
            "explained": figures.explained,
            "unmetered": figures.unmetered,
            "unlogged": figures.unlogged,
            "claimedAt": int(now.timestamp()),
            EXPIRES_AT: int((figures.hour + DAY_RETENTION).timestamp()),
        }
        item = reconciled_key(figures.hour) | {name: {"N": str(value)} for name, value in numbers.items()}
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR "
                "(attribute_not_exists(publishedAt) AND claimedAt < :stale)",
                ExpressionAttributeValues={":stale": {"N": str(int((now - CLAIM_STALE).timestamp()))}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _published(self, hour: datetime) -> bool:
        reply = self._table.client.get_item(
            TableName=self._table.name, Key=reconciled_key(hour), ConsistentRead=True
        )
        return "publishedAt" in reply.get("Item", {})

    def _publish(self, figures: HourTotal, now: datetime) -> None:
        """Stamped when published: an alarm on the last hour sees the figure at once."""
        dimensions = [{"Name": ENVIRONMENT, "Value": self._environment}]
        data = [{"MetricName": "UnmeteredRequests", "Value": figures.unmetered, "Unit": "Count"}]
        if figures.ratio is not None:
            data.append(
                {"MetricName": "MeteringCompleteness", "Value": 100 * figures.ratio, "Unit": "Percent"}
            )
        self._cloudwatch.put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[point | {"Dimensions": dimensions, "Timestamp": now} for point in data],
        )

    def _behind(self, now: datetime) -> timedelta | None:
        """How far the readers were behind the stream's tip lately (the consumer's own IteratorAge);
        None when none reported it (just started, or CLOUDWATCH_METRICS=off)."""
        reply = self._cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName="IteratorAge",
            Dimensions=[{"Name": ENVIRONMENT, "Value": self._environment}],
            StartTime=now - BEHIND_WINDOW,
            EndTime=now,
            Period=int(BEHIND_WINDOW.total_seconds()),
            Statistics=["Maximum"],
        )
        points = reply.get("Datapoints", [])
        return timedelta(milliseconds=max(p["Maximum"] for p in points)) if points else None
