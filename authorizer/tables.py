"""Table definitions for `metering provision`: boto3 `create_table` and `update_time_to_live` kwargs."""

from __future__ import annotations

from typing import Any

from authorizer.ratelimit import WINDOW_EXPIRY_ATTRIBUTE


def table_specs(api_keys_table: str, rate_limit_table: str) -> list[dict[str, Any]]:
    """`create_table` kwargs for the keys table and the rate-limit table (on-demand billing)."""
    return [
        _spec(api_keys_table, "key_id"),
        _spec(rate_limit_table, "pk"),
    ]


def ttl_specs(api_keys_table: str, rate_limit_table: str) -> list[dict[str, Any]]:
    """`update_time_to_live` kwargs: only rate-limit windows expire; keys are kept (revoked, not deleted)."""
    del api_keys_table  # keys never expire
    return [
        {
            "TableName": rate_limit_table,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": WINDOW_EXPIRY_ATTRIBUTE},
        }
    ]


def _spec(name: str, partition_key: str) -> dict[str, Any]:
    return {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": partition_key, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": partition_key, "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
