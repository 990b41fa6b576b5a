"""One frozen settings object, built from the environment once at start-up.

A bad value raises `ConfigError` naming the variable, so start-up stops with a clear message
instead of failing later inside a flush. Endpoints are not settings: boto3 resolves
`AWS_ENDPOINT_URL` and its per-service forms itself.

`COUNT_EVENTS_FROM`/`COUNT_EVENTS_TO` and `REPLAY_PROGRESS_DIR` are set by `metering replay` for
the daemon it starts (see `consumer.ops.replay`); the live consumer leaves them unset.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from consumer.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CountingWindow:
    """Events counted by a replay: those whose own timestamp is in [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds need a time zone")
        if self.start >= self.end:
            raise ValueError(f"the window is empty: {self.start.isoformat()} >= {self.end.isoformat()}")

    def __contains__(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Settings:
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
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        environment = _read(env, "ENVIRONMENT", "local", _environment)
        return cls(
            environment=environment,
            region=_read(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"), _name),
            stream_name=_read(env, "USAGE_STREAM_NAME", f"complical-usage-stream-{environment}", _name),
            analytics_table=_read(
                env, "ANALYTICS_TABLE_NAME", f"complical-usage-analytics-{environment}", _name
            ),
            api_keys_table=_read(env, "API_KEYS_TABLE_NAME", f"complical-api-keys-{environment}", _name),
            rate_limit_table=_read(
                env, "RATE_LIMIT_TABLE_NAME", f"complical-rate-limits-{environment}", _name
            ),
            dlq_name=_read(env, "DLQ_NAME", f"complical-usage-dlq-{environment}", _name),
            application_name=_read(
                env, "KCL_APPLICATION_NAME", f"complical-usage-consumer-{environment}", _name
            ),
            # Stable across restarts of one task: the KCL then finds its own leases at once.
            worker_id=_read(env, "KCL_WORKER_ID", socket.gethostname(), _name),
            flush_interval_seconds=_read(env, "FLUSH_INTERVAL_SECONDS", "5", _seconds(0.2, 60)),
            shutdown_grace_seconds=_read(env, "SHUTDOWN_GRACE_SECONDS", "25", _seconds(5, 110)),
            write_retry_seconds=_read(env, "WRITE_RETRY_SECONDS", "60", _seconds(1, 600)),
            log_level=_read(env, "LOG_LEVEL", "INFO", _log_level),
            metrics_port=_read(env, "METRICS_PORT", "9400", _port),
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


def _read(env: Mapping[str, str], variable: str, default: str, parse: Callable[[str], T]) -> T:
    raw = env.get(variable, "").strip() or default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{variable}={raw!r} is invalid: {exc}") from exc


def _environment(raw: str) -> str:
    if not _ENVIRONMENT.match(raw):
        raise ValueError("use lowercase letters, digits and '-', at most 32 characters")
    return raw


def _name(raw: str) -> str:
    if not _NAME.match(raw):
        raise ValueError("use letters, digits, '_', '.', '-', at most 128 characters")
    return raw


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} seconds")
        return value

    return parse


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
