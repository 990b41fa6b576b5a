"""The consumer's CloudWatch metrics, sent from a background thread: a flush never waits for them.

A record processor hands samples to `put`, which never blocks: past `capacity` queued samples it
drops them and counts the drop. A daemon thread folds them (`consumer.core.measures.MetricFolder`)
and, every `interval` seconds and once more on `close`, sends them with one of two senders:

- `PutMetricData` (`CLOUDWATCH_METRICS=api`): calls of up to 1,000 datums, latencies as values and
  counts. A failed call is logged and its datums dropped: a CloudWatch outage costs metrics, never
  counts, and never holds a flush.
- Embedded Metric Format (`CLOUDWATCH_METRICS=emf`): one JSON document per line on stderr, which the
  KCL daemon copies verbatim to the container's log (`properties/logback.xml` drops its own copy);
  CloudWatch Logs extracts the metrics from the awslogs stream. No API call at all.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TextIO

import orjson
import structlog

from consumer.aws import translated
from consumer.core.measures import MetricFolder, Sample, every
from consumer.errors import Misconfigured, SinkUnavailable
from contract.cloudwatch import NAMESPACE

Sender = Callable[[MetricFolder], None]
MODES = ("api", "emf", "off")


class Publisher(Protocol):
    def put(self, samples: Iterable[Sample]) -> None: ...

    def close(self, timeout: float) -> None: ...


class NoPublisher:
    """`CLOUDWATCH_METRICS=off`, and replays (their counts were published when first counted)."""

    def put(self, samples: Iterable[Sample]) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


class BackgroundPublisher:
    def __init__(
        self,
        send: Sender,
        *,
        interval: float,
        log: Any,
        capacity: int = 50_000,
        dropped: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._send, self._interval, self._log, self._dropped = send, interval, log, dropped
        self._queue: queue.Queue[Sample] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-metrics", daemon=True)
        self._thread.start()

    def put(self, samples: Iterable[Sample]) -> None:
        lost = 0
        for sample in samples:
            try:
                self._queue.put_nowait(sample)
            except queue.Full:
                lost += 1
        if lost:
            self._dropped(lost)

    def close(self, timeout: float) -> None:
        """Send what is queued (within `timeout`), then stop."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._send_queued()
        self._send_queued()

    def _send_queued(self) -> None:
        folder = MetricFolder()
        while True:
            try:
                folder.add(self._queue.get_nowait())
            except queue.Empty:
                break
        if not len(folder):
            return
        try:
            self._send(folder)
        except (SinkUnavailable, Misconfigured) as exc:
            self._log.warning("metrics_not_published", datums=len(folder), error=str(exc)[:300])
        except Exception:  # a bug here must cost metrics, never the thread (and so every later metric)
            self._log.exception("metrics_publisher_failed")


def api_sender(cloudwatch: Any, environment: str) -> Sender:
    def send(folder: MetricFolder) -> None:
        for datums in every(folder.datums(environment)):
            with translated("publishing CloudWatch metrics"):
                cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=datums)

    return send


def emf_sender(environment: str, stream: TextIO) -> Sender:
    # structlog's writer on the same stream takes the lock the logs take: lines never interleave.
    writer = structlog.PrintLogger(stream)

    def send(folder: MetricFolder) -> None:
        for document in folder.emf_documents(environment):
            writer.msg(orjson.dumps(document).decode())

    return send
