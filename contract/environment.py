"""Settings from environment variables, read the same way by every component, and the names they share.

A parser raises `ValueError`; the reader turns that into `ConfigError` naming the variable, so
start-up stops with a clear message instead of failing later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypedDict, TypeVar

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class ConfigError(Exception):
    """A setting from the environment is invalid; the message names the variable."""


class Reader:
    """Reads variables from one environment; an unset or blank variable takes its default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(self, variable: str, default: str, parse: Callable[[str], T]) -> T:
        raw = self._env.get(variable, "").strip() or default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{variable}={raw!r} is invalid: {exc}") from exc


class SharedNames(TypedDict):
    """What the authorizer and the consumer must agree on to meet: one stream, one pair of tables."""

    environment: str
    stream_name: str
    api_keys_table: str
    rate_limit_table: str


def shared_names(read: Reader) -> SharedNames:
    environment = read("ENVIRONMENT", "local", environment_name)
    return SharedNames(
        environment=environment,
        stream_name=read("USAGE_STREAM_NAME", f"complical-usage-stream-{environment}", resource_name),
        api_keys_table=read("API_KEYS_TABLE_NAME", f"complical-api-keys-{environment}", resource_name),
        rate_limit_table=read("RATE_LIMIT_TABLE_NAME", f"complical-rate-limits-{environment}", resource_name),
    )


def api_name(environment: str) -> str:
    """The REST API's name (ecs/api-gateway.yaml), the `ApiName` of its CloudWatch metrics."""
    return f"complical-api-{environment}"


def access_log_group(environment: str) -> str:
    """The stage's access-log group (ecs/api-gateway.yaml), created locally by `metering provision`."""
    return f"complical-usage-access-logs-{environment}"


def environment_name(raw: str) -> str:
    if not _ENVIRONMENT.match(raw):
        raise ValueError("use lowercase letters, digits and '-', at most 32 characters")
    return raw


def resource_name(raw: str) -> str:
    if not _NAME.match(raw):
        raise ValueError("use letters, digits, '_', '.', '-', at most 128 characters")
    return raw


def boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("use true or false")


def between(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}{unit}")
        return value

    return parse
