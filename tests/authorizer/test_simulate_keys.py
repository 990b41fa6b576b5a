"""`metering simulate` drives the authorizer with keys of its own, and must never leave them active."""

from __future__ import annotations

from typing import Any

import pytest

from authorizer import keystore
from authorizer.errors import KeyStoreUnavailable
from consumer.settings import ConsumerSettings
from metering.commands.simulate import simulate
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, STREAM, Aws


def test_keys_created_before_a_failure_are_revoked(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """When creating the third user's key fails, the two keys already created are revoked."""
    create_key = keystore.create_key
    created = [0]

    def failing_third(*args: Any, **kwargs: Any) -> tuple[str, str]:
        created[0] += 1
        if created[0] == 3:
            raise KeyStoreUnavailable("throttled")
        return create_key(*args, **kwargs)

    monkeypatch.setattr(keystore, "create_key", failing_third)
    for name, value in {
        "ENABLE_KINESIS_ANALYTICS": "false",
        "KINESIS_READ_TIMEOUT_SECONDS": "2",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)  # simulate sets defaults for these: restore them afterwards
    settings = ConsumerSettings.from_env(
        {
            "API_KEYS_TABLE_NAME": KEYS_TABLE,
            "RATE_LIMIT_TABLE_NAME": LIMITS_TABLE,
            "USAGE_STREAM_NAME": STREAM,
        }
    )
    with pytest.raises(KeyStoreUnavailable):
        simulate(settings, rate=10, duration=1, users=5)
    assert [key.status for key in keystore.list_keys(aws.dynamodb, KEYS_TABLE)] == ["revoked"] * 2
