"""The consumer and the authorizer read their shared names alike, and stop on bad values by name."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CLOUDWATCH_METRICS": "statsd"},
            "CLOUDWATCH_METRICS='statsd' is invalid: must be one of api, emf, off",
        ),
        ({"METRICS_PUBLISH_SECONDS": "1"}, "METRICS_PUBLISH_SECONDS='1' is invalid"),
        (
            {"HEALTH_STALL_SECONDS": "60"},
            "HEALTH_STALL_SECONDS=60 is invalid: must exceed WRITE_RETRY_SECONDS",
        ),
        (
            {"HEALTH_POLL_SECONDS": "65"},
            "HEALTH_POLL_SECONDS=65 is invalid: must exceed WRITE_RETRY_SECONDS",
        ),
        ({"HEALTH_POLL_SECONDS": "5"}, "HEALTH_POLL_SECONDS='5' is invalid: must be between"),
        ({"ALERTS_ENABLED": "maybe"}, "ALERTS_ENABLED='maybe' is invalid"),
        (
            {"ALERT_RULES_FILE": "/nonexistent/rules.json"},
            "ALERT_RULES_FILE='/nonexistent/rules.json' is invalid",
        ),
    ],
)
def test_observability_settings_stop_start_up_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ConsumerSettings.from_env(env)


def test_alert_rules_come_from_a_json_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('{"user_calls_per_minute": 50, "auth_failure_ratio": null}')
    settings = ConsumerSettings.from_env({"ALERT_RULES_FILE": str(rules)})
    assert (
        settings.alert_rules.user_calls_per_minute == 50 and settings.alert_rules.auth_failure_ratio is None
    )
    rules.write_text('{"user_calls_per_minit": 50}')
    with pytest.raises(ConfigError, match="unknown alert rule settings: user_calls_per_minit"):
        ConsumerSettings.from_env({"ALERT_RULES_FILE": str(rules)})
    assert ConsumerSettings.from_env({"ALERTS_ENABLED": "false"}).alerts_topic_name is None
    assert (
        ConsumerSettings.from_env({"ENVIRONMENT": "prod"}).alerts_topic_name == "complical-usage-alerts-prod"
    )


def test_route_templates_name_the_endpoints_behind_a_greedy_resource() -> None:
    routes = ConsumerSettings.from_env({"ROUTE_TEMPLATES": "/items/{id}, /v1/usage"}).routes
    assert routes.endpoint("GET", "/{proxy+}", "/items/42") == "GET /items/{id}"
    assert routes.endpoint("GET", "/{proxy+}", "/nowhere") == "GET (other)"
    with pytest.raises(ConfigError, match="ROUTE_TEMPLATES='items' is invalid: not a route template"):
        ConsumerSettings.from_env({"ROUTE_TEMPLATES": "items"})
