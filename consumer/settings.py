"""One frozen settings object, built from the environment once at start-up.

A bad value raises `ConfigError` naming the variable, so start-up stops with a clear message
instead of failing later inside a flush. Endpoints are not settings: boto3 resolves
`AWS_ENDPOINT_URL` and its per-service forms itself.

`COUNT_EVENTS_FROM`/`COUNT_EVENTS_TO` and `REPLAY_PROGRESS_DIR` are set by `metering replay` for
the daemon it starts (see `metering.commands.replay`); the live consumer leaves them unset.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consumer.core.window import CountingWindow
from contract.environment import ConfigError, Reader, between, resource_name, shared_names

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    environment: str
    region: str
    stream_name: str
    analytics_table: str
    api_keys_table: str
    rate_limit_table: str
    dlq_name: str
    application_name: str
    worker_id: str
    flush_interval_seconds: float
    shutdown_grace_seconds: float
    write_retry_seconds: float
    log_level: str
    metrics_port: int
    counting_window: CountingWindow | None = None  # None: count every event
    progress_dir: Path | None = None  # where shards report "read up to the tip" (replay only)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsumerSettings:
        read = Reader(env)
        names = shared_names(read)
        environment = names["environment"]
        return cls(
            **names,
            region=read("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"), resource_name),
            analytics_table=read(
                "ANALYTICS_TABLE_NAME", f"complical-usage-analytics-{environment}", resource_name
            ),
            dlq_name=read("DLQ_NAME", f"complical-usage-dlq-{environment}", resource_name),
            application_name=read(
                "KCL_APPLICATION_NAME", f"complical-usage-consumer-{environment}", resource_name
            ),
            # Stable across restarts of one task: the KCL then finds its own leases at once.
            worker_id=read("KCL_WORKER_ID", socket.gethostname(), resource_name),
            flush_interval_seconds=read("FLUSH_INTERVAL_SECONDS", "5", between(0.2, 60, " seconds")),
            shutdown_grace_seconds=read("SHUTDOWN_GRACE_SECONDS", "25", between(5, 110, " seconds")),
            write_retry_seconds=read("WRITE_RETRY_SECONDS", "60", between(1, 600, " seconds")),
            log_level=read("LOG_LEVEL", "INFO", _log_level),
            metrics_port=read("METRICS_PORT", "9400", _port),
            counting_window=_counting_window(env),
            progress_dir=Path(env["REPLAY_PROGRESS_DIR"]) if env.get("REPLAY_PROGRESS_DIR") else None,
        )


def _counting_window(env: Mapping[str, str]) -> CountingWindow | None:
    start, end = env.get("COUNT_EVENTS_FROM", "").strip(), env.get("COUNT_EVENTS_TO", "").strip()
    if not start and not end:
        return None
    if not start or not end:
        raise ConfigError("COUNT_EVENTS_FROM and COUNT_EVENTS_TO go together")
    try:
        return CountingWindow(_instant(start), _instant(end))
    except ValueError as exc:
        raise ConfigError(f"COUNT_EVENTS_FROM={start!r}, COUNT_EVENTS_TO={end!r}: {exc}") from exc


def _instant(raw: str) -> datetime:
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        raise ValueError(f"{raw!r} has no time zone")
    return at


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("must be a TCP port, or 0 to serve no metrics")
    return port


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level
