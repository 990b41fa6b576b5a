"""One frozen settings object, built from the environment once at start-up.

A bad value raises `ConfigError` naming the variable, so start-up stops with a clear message
instead of failing later inside a flush. Endpoints are not settings: boto3 resolves
`AWS_ENDPOINT_URL` and its per-service forms itself.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from consumer.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


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
        )


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


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level
