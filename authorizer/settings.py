"""The Lambda's settings, read once from the environment (stdlib only).

A bad value raises `ConfigError` naming the variable. Endpoints are not settings: boto3 resolves
`AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_KINESIS`, ...) itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contract.environment import Reader, between, boolean, shared_names


@dataclass(frozen=True, slots=True)
class AuthorizerSettings:
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
    kinesis_retry_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthorizerSettings:
        read = Reader(env)
        return cls(
            **shared_names(read),
            analytics_enabled=read("ENABLE_KINESIS_ANALYTICS", "false", boolean),
            key_cache_ttl_seconds=read("KEY_CACHE_TTL_SECONDS", "30", between(0, 300)),
            negative_cache_ttl_seconds=read("NEGATIVE_CACHE_TTL_SECONDS", "60", between(0, 3600)),
            negative_cache_size=int(read("NEGATIVE_CACHE_SIZE", "10000", between(0, 1_000_000))),
            event_queue_size=int(read("EVENT_QUEUE_SIZE", "10000", between(1, 1_000_000))),
            flush_on_return_ms=read("KINESIS_FLUSH_ON_RETURN_MS", "0", between(0, 1000)),
            kinesis_connect_timeout_seconds=read("KINESIS_CONNECT_TIMEOUT_SECONDS", "0.1", between(0.01, 10)),
            kinesis_read_timeout_seconds=read("KINESIS_READ_TIMEOUT_SECONDS", "0.3", between(0.01, 10)),
            kinesis_retry_seconds=read("KINESIS_RETRY_SECONDS", "2", between(0, 30)),
        )
