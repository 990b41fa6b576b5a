"""Unit tests of the TTL cache and of settings from the environment."""

from __future__ import annotations

import pytest

from authorizer.cache import TtlCache
from authorizer.settings import AuthorizerSettings
from consumer.testing import FakeClock
from contract.environment import ConfigError


def test_entries_expire_after_ttl() -> None:
    """An entry is served until its TTL passes, then forgotten."""
    clock = FakeClock()
    cache: TtlCache[int] = TtlCache(10, 30, clock)
    cache.put("a", 1)
    clock.advance(29.9)
    assert cache.get("a") == 1
    clock.advance(0.1)
    assert cache.get("a") is None and len(cache) == 0


def test_cache_is_bounded_least_recently_used_first() -> None:
    """Past its size the cache evicts the least recently used entry."""
    cache: TtlCache[int] = TtlCache(2, 30, FakeClock())
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_zero_size_cache_stores_nothing() -> None:
    """A cache sized or timed at zero is disabled."""
    cache: TtlCache[int] = TtlCache(0, 30, FakeClock())
    cache.put("a", 1)
    assert cache.get("a") is None


def test_settings_defaults_follow_the_environment_name() -> None:
    """Resource names default from ENVIRONMENT; analytics are off unless enabled."""
    settings = AuthorizerSettings.from_env({"ENVIRONMENT": "staging"})
    assert settings.stream_name == "complical-usage-stream-staging"
    assert settings.api_keys_table == "complical-api-keys-staging"
    assert settings.rate_limit_table == "complical-rate-limits-staging"
    assert settings.analytics_enabled is False
    assert AuthorizerSettings.from_env({}).environment == "local"


def test_settings_read_explicit_values() -> None:
    """Explicit variables override the defaults."""
    settings = AuthorizerSettings.from_env(
        {
            "ENABLE_KINESIS_ANALYTICS": "TRUE",
            "USAGE_STREAM_NAME": "s",
            "API_KEYS_TABLE_NAME": "k",
            "RATE_LIMIT_TABLE_NAME": "r",
            "KEY_CACHE_TTL_SECONDS": "5",
            "KINESIS_READ_TIMEOUT_SECONDS": "2",
        }
    )
    assert (settings.analytics_enabled, settings.stream_name, settings.api_keys_table) == (True, "s", "k")
    assert (settings.rate_limit_table, settings.key_cache_ttl_seconds) == ("r", 5.0)
    assert (settings.kinesis_read_timeout_seconds, settings.kinesis_connect_timeout_seconds) == (2.0, 0.1)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ENABLE_KINESIS_ANALYTICS", "maybe"),
        ("ENVIRONMENT", "Prod!"),
        ("USAGE_STREAM_NAME", "a b"),
        ("KEY_CACHE_TTL_SECONDS", "-1"),
        ("EVENT_QUEUE_SIZE", "lots"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    """A bad value raises ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=variable):
        AuthorizerSettings.from_env({variable: value})
