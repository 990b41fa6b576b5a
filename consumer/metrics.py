"""Prometheus metrics and health: record processors write metrics, `metering consume` serves them.

Each shard's processor is its own child process of the JVM, so metrics use prometheus-client's
multiprocess mode: `metering consume` gives the daemon (and so every child) a fresh
`PROMETHEUS_MULTIPROC_DIR`, children write their samples there, and `/metrics` merges the files.
`/healthz` answers 200 while the KCL daemon runs, 503 once it has stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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


def serve(port: int, multiproc_dir: Path, daemon_alive: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on 0.0.0.0:`port` from a background thread."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
    up = Gauge("metering_daemon_up", "1 while the KCL MultiLangDaemon runs", registry=registry)
    up.set_function(lambda: 1.0 if daemon_alive() else 0.0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                alive = daemon_alive()
                body = b'{"status":"ok"}' if alive else b'{"status":"daemon stopped"}'
                self._answer(200 if alive else 503, body, "application/json")
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
