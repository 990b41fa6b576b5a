"""The consumer and the authorizer read their shared names alike, and stop on bad values by name."""

from __future__ import annotations

import pytest

from authorizer.settings import AuthorizerSettings
from consumer.settings import ConsumerSettings
from contract.environment import ConfigError


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"ENVIRONMENT": "prod"},
        {"ENVIRONMENT": "prod", "USAGE_STREAM_NAME": "usage", "API_KEYS_TABLE_NAME": "keys"},
        {"RATE_LIMIT_TABLE_NAME": "limits", "ENVIRONMENT": "  "},
    ],
)
def test_both_components_name_the_same_stream_and_tables(env: dict[str, str]) -> None:
    consumer, authorizer = ConsumerSettings.from_env(env), AuthorizerSettings.from_env(env)
    shared = ("environment", "stream_name", "api_keys_table", "rate_limit_table")
    assert [getattr(consumer, name) for name in shared] == [getattr(authorizer, name) for name in shared]


def test_each_component_stops_on_a_bad_value_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="FLUSH_INTERVAL_SECONDS='0' is invalid: must be between"):
        ConsumerSettings.from_env({"FLUSH_INTERVAL_SECONDS": "0"})
    with pytest.raises(ConfigError, match="ENVIRONMENT='Prod!' is invalid"):
        AuthorizerSettings.from_env({"ENVIRONMENT": "Prod!"})
