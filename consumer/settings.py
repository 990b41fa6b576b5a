"""One frozen settings object, built from the environment once at start-up.

A bad value raises `ConfigError` naming the variable, so start-up stops with a clear message
instead of failing later inside a flush. Endpoints are not settings: boto3 resolves
`AWS_ENDPOINT_URL` and its per-service forms itself.

`COUNT_EVENTS_FROM`/`COUNT_EVENTS_TO` and `REPLAY_PROGRESS_DIR` are set by `metering replay` for
the daemon it starts (see `metering.commands.replay`); the live consumer leaves them unset.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consumer.cloudwatch import MODES
from consumer.core.alerts import AlertRules
from consumer.core.routes import Routes
from consumer.core.window import CountingWindow
from contract.environment import ConfigError, Reader, between, boolean, resource_name, shared_names

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
    cloudwatch_metrics: str  # api, emf or off (consumer.cloudwatch)
    metrics_publish_seconds: float
    health_stall_seconds: float
    health_poll_seconds: float
    alerts_topic_name: str | None  # None: no alerts
    alert_rules: AlertRules
    routes: Routes  # route templates behind a greedy resource (`/{proxy+}`): ROUTE_TEMPLATES
    reconcile_after_seconds: float  # an hour's completeness is final this long after it ends
    reconcile_every_seconds: float  # how often `metering consume` looks for final hours
    counting_window: CountingWindow | None = None  # None: count every event
    progress_dir: Path | None = None  # where shards report "read up to the tip" (replay only)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsumerSettings:
        read = Reader(env)
        names = shared_names(read)
        environment = names["environment"]
        settings = cls(
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
            cloudwatch_metrics=read("CLOUDWATCH_METRICS", "api", _one_of(MODES)),
            metrics_publish_seconds=read("METRICS_PUBLISH_SECONDS", "30", between(5, 300, " seconds")),
            health_stall_seconds=read("HEALTH_STALL_SECONDS", "180", between(10, 3600, " seconds")),
            health_poll_seconds=read("HEALTH_POLL_SECONDS", "120", between(10, 3600, " seconds")),
            alerts_topic_name=(
                read("ALERTS_TOPIC_NAME", f"complical-usage-alerts-{environment}", resource_name)
                if read("ALERTS_ENABLED", "true", boolean)
                else None
            ),
            alert_rules=read("ALERT_RULES_FILE", "-", _alert_rules),
            routes=read("ROUTE_TEMPLATES", "", _routes),
            # Access logs reach the stream seconds to minutes after their requests (docs/completeness.md).
            reconcile_after_seconds=read("RECONCILE_AFTER_SECONDS", "900", between(1, 21600, " seconds")),
            reconcile_every_seconds=read("RECONCILE_EVERY_SECONDS", "60", between(1, 3600, " seconds")),
            counting_window=_counting_window(env),
            progress_dir=Path(env["REPLAY_PROGRESS_DIR"]) if env.get("REPLAY_PROGRESS_DIR") else None,
        )
        _stall_after_ride_out(settings)
        return settings


def _stall_after_ride_out(settings: ConsumerSettings) -> None:
    """A flush riding out an outage is slow, not stalled: /healthz must wait longer than that. The
    processor takes no poll while it flushes, so that holds for the poll threshold too."""
    least = settings.write_retry_seconds + settings.flush_interval_seconds
    for name, seconds in (
        ("HEALTH_STALL_SECONDS", settings.health_stall_seconds),
        ("HEALTH_POLL_SECONDS", settings.health_poll_seconds),
    ):
        if seconds <= least:
            raise ConfigError(
                f"{name}={seconds:g} is invalid: must exceed"
                f" WRITE_RETRY_SECONDS + FLUSH_INTERVAL_SECONDS ({least:g})"
            )


def _alert_rules(path: str) -> AlertRules:
    if path == "-":
        return AlertRules()
    try:
        settings = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read a JSON object from it: {exc}") from exc
    if not isinstance(settings, dict):
        raise ValueError("must hold a JSON object")
    return AlertRules.from_mapping(settings)


def _routes(raw: str) -> Routes:
    """Comma-separated route templates, `/items/{id},/v1/usage`: `consumer.core.routes`."""
    return Routes(tuple(template.strip() for template in raw.split(",") if template.strip()))


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw.lower()

    return parse


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
