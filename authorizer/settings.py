"""The Lambda's settings, read once from the environment (stdlib only).

A bad value raises `ConfigError` naming the variable. Endpoints are not settings: boto3 resolves
`AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_KINESIS`, ...) itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from authorizer.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    environment: str = "local"
    stream_name: str = "complical-usage-stream-local"
    api_keys_table: str = "complical-api-keys-local"
    rate_limit_table: str = "complical-rate-limits-local"
    analytics_enabled: bool = False
    key_cache_ttl_seconds: float = 30.0
    negative_cache_ttl_seconds: float = 60.0
    negative_cache_size: int = 10_000
    event_queue_size: int = 10_000
    flush_on_return_ms: float = 0.0
    kinesis_connect_timeout_seconds: float = 0.1
    kinesis_read_timeout_seconds: float = 0.3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        environment = _read(env, "ENVIRONMENT", "local", _environment)
        return cls(
            environment=environment,
            stream_name=_read(env, "USAGE_STREAM_NAME", f"complical-usage-stream-{environment}", _name),
            api_keys_table=_read(env, "API_KEYS_TABLE_NAME", f"complical-api-keys-{environment}", _name),
            rate_limit_table=_read(
                env, "RATE_LIMIT_TABLE_NAME", f"complical-rate-limits-{environment}", _name
            ),
            analytics_enabled=_read(env, "ENABLE_KINESIS_ANALYTICS", "false", _boolean),
            key_cache_ttl_seconds=_read(env, "KEY_CACHE_TTL_SECONDS", "30", _number(0, 300)),
            negative_cache_ttl_seconds=_read(env, "NEGATIVE_CACHE_TTL_SECONDS", "60", _number(0, 3600)),
            negative_cache_size=int(_read(env, "NEGATIVE_CACHE_SIZE", "10000", _number(0, 1_000_000))),
            event_queue_size=int(_read(env, "EVENT_QUEUE_SIZE", "10000", _number(1, 1_000_000))),
            flush_on_return_ms=_read(env, "KINESIS_FLUSH_ON_RETURN_MS", "0", _number(0, 1000)),
            kinesis_connect_timeout_seconds=_read(
                env, "KINESIS_CONNECT_TIMEOUT_SECONDS", "0.1", _number(0.01, 10)
            ),
            kinesis_read_timeout_seconds=_read(env, "KINESIS_READ_TIMEOUT_SECONDS", "0.3", _number(0.01, 10)),
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


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("use true or false")


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse
