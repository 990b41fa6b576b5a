"""Prometheus metrics and health: record processors write metrics, `metering consume` serves them.

Each shard's processor is its own child process of the JVM, so metrics use prometheus-client's
multiprocess mode: `metering consume` gives the daemon (and so every child) a fresh
`PROMETHEUS_MULTIPROC_DIR`, children write their samples there, and `/metrics` merges the files.
`/healthz` and `/readyz` judge the consumer from the same samples (`serve`).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNFLUSHED_SINCE = "metering_unflushed_since_timestamp_seconds"
LAST_POLL = "metering_last_poll_timestamp_seconds"
LEASES_HELD = "metering_leases_held"


class ProcessorMetrics:
    """What one record processor reports. Per-shard gauges keep the most recent value written."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "metering_records", "Records read from the stream", ["shard"], registry=registry
        )
        self.redelivered = Counter(
            "metering_records_redelivered",
            "Records delivered again at or below a position the shard had passed: ignored, never recounted",
            ["shard"],
            registry=registry,
        )
        self.redrive_copies = Counter(
            "metering_redrive_copies_ignored",
            "Re-driven records whose origin another copy already counts (a re-drive put twice)",
            registry=registry,
        )
        self.events = Counter(
            "metering_events_counted", "Valid usage events aggregated, by type", ["type"], registry=registry
        )
        self.rejected = Counter(
            "metering_records_rejected",
            "Records that cannot be counted, by reason",
            ["reason"],
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "metering_flush_seconds", "Time to write one flush range durably", registry=registry
        )
        self.checkpoints = Counter(
            "metering_checkpoints", "Checkpoints taken after durable flushes", ["shard"], registry=registry
        )
        self.millis_behind = Gauge(
            "metering_millis_behind_latest",
            "How far the shard's reader is behind the stream's tip",
            ["shard"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.last_flush = Gauge(
            "metering_last_flush_timestamp_seconds",
            "When the shard last checkpointed a durable flush",
            ["shard"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        # Live gauges: a child that died drops out (`serve` forgets dead children before each scrape).
        self.leases_held = Gauge(
            "metering_leases_held",
            "1 while a live record processor holds the shard's lease",
            ["shard"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.pending_records = Gauge(
            "metering_pending_records",
            "Records read and aggregated in memory, not yet durably flushed",
            ["shard"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.unflushed_since = Gauge(
            UNFLUSHED_SINCE,
            "When the oldest record still waiting for a durable flush was read (0: none waits)",
            ["shard"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        # GetRecords failing (an outage, a wrong endpoint, no permission) never reaches the processor:
        # only the age of its last poll shows a consumer that cannot read (issue 21).
        self.last_poll = Gauge(
            LAST_POLL,
            "When the shard's processor last received a poll of the stream, empty or not (0: lease let go)",
            ["shard"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.dead_letters_sent = Counter(
            "metering_dead_letters_sent",
            "Records or log events durably written to the dead-letter queue, by reason",
            ["reason"],
            registry=registry,
        )
        # Apart from the rest: a caller may cause one (issue 20), so it has an alarm threshold of its own.
        self.access_log_lines_rejected = Counter(
            "metering_access_log_lines_rejected",
            "Access-log lines (log events of a good envelope) dead-lettered, by reason",
            ["reason"],
            registry=registry,
        )
        self.decoder_errors = Counter(
            "metering_decoder_errors",
            "Records our decoder failed on (a bug of ours: dead-lettered as DECODER_ERROR)",
            registry=registry,
        )
        self.flush_retries = Counter(
            "metering_flush_retries", "Flush attempts that failed and were tried again", registry=registry
        )
        self.flush_failures = Counter(
            "metering_flush_failures",
            "Flushes given up after WRITE_RETRY_SECONDS: the processor exits, its records are replayed",
            registry=registry,
        )
        self.event_lag = Histogram(
            "metering_event_lag_seconds",
            "From an event's timestamp to its durable flush",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )
        self.processor_starts = Counter(
            "metering_record_processor_starts",
            "Record processors the KCL daemon started (one per shard lease, again after a crash)",
            registry=registry,
        )
        self.alerts_fired = Counter(
            "metering_alerts_fired",
            "Alert episodes this consumer opened, by rule",
            ["rule"],
            registry=registry,
        )
        self.metrics_dropped = Counter(
            "metering_cloudwatch_samples_dropped",
            "CloudWatch samples dropped because the publisher's queue was full",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Health:
    daemon_alive: bool
    leases_held: int
    stalled: tuple[str, ...]  # shards whose records wait unflushed longer than the threshold
    not_polling: tuple[str, ...] = ()  # held shards whose last successful poll is older than allowed

    @property
    def healthy(self) -> bool:
        return self.daemon_alive and not self.stalled and not self.not_polling

    @property
    def ready(self) -> bool:
        return self.daemon_alive and self.leases_held > 0

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "status": self._status(),
                "leases_held": self.leases_held,
                "stalled": list(self.stalled),
                "not_polling": list(self.not_polling),
            }
        )

    def _status(self) -> str:
        if not self.daemon_alive:
            return "daemon stopped"
        return "stalled" if self.stalled else "not polling" if self.not_polling else "ok"


def health(
    registry: CollectorRegistry, daemon_alive: bool, now: float, stall_seconds: float, poll_seconds: float
) -> Health:
    """Judge the consumer from what its live record processors last wrote (pure over the registry)."""
    overdue: dict[str, list[str]] = {UNFLUSHED_SINCE: [], LAST_POLL: []}
    limit = {UNFLUSHED_SINCE: stall_seconds, LAST_POLL: poll_seconds}
    leases = 0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in limit and sample.value and now - sample.value > limit[sample.name]:
                overdue[sample.name].append(sample.labels["shard"])
            elif sample.name == LEASES_HELD:
                leases += int(sample.value)
    stalled, not_polling = (tuple(sorted(overdue[name])) for name in (UNFLUSHED_SINCE, LAST_POLL))
    return Health(daemon_alive, leases, stalled, not_polling)


def forget_dead_children(multiproc_dir: Path) -> None:
    """Drop the live gauges of record processors that have exited (killed ones never say so)."""
    for path in multiproc_dir.glob("gauge_live*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, str(multiproc_dir))  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's


def serve(
    port: int,
    multiproc_dir: Path,
    daemon_alive: Callable[[], bool],
    *,
    stall_seconds: float,
    poll_seconds: float,
    clock: Callable[[], float] = time.time,
    collectors: Iterable[Collector] = (),
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on 0.0.0.0:`port` from a background thread.

    /healthz: 200 while the daemon runs, no held shard has records waiting unflushed for more than
    `stall_seconds` and every held shard was polled within `poll_seconds`; 503 otherwise (ECS
    replaces the task; compose shows the container unhealthy).
    /readyz: 200 once the daemon holds at least one lease.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
    up = Gauge("metering_daemon_up", "1 while the KCL MultiLangDaemon runs", registry=registry)
    up.set_function(lambda: 1.0 if daemon_alive() else 0.0)
    Info("metering_build", "Versions of this consumer", registry=registry).info(_versions())
    for collector in collectors:  # figures of `metering consume` itself (consumer.completeness)
        registry.register(collector)

    def current() -> Health:
        forget_dead_children(multiproc_dir)
        return health(registry, daemon_alive(), clock(), stall_seconds, poll_seconds)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                forget_dead_children(multiproc_dir)
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                state = current()
                good = state.healthy if self.path == "/healthz" else state.ready
                self._answer(200 if good else 503, state.body(), "application/json")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the logs

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def _versions() -> dict[str, str]:
    def of(distribution: str) -> str:
        try:
            return version(distribution)
        except PackageNotFoundError:
            return "unknown"

    return {
        "version": of("complical-usage-metering"),
        "kcl": of("kclpy-ext"),
        "python": platform.python_version(),
    }
