"""The analytics table: its keys, counters and schema, as the writer and every reader know them.

README "Analytics table" documents each item. Buckets are the event's own time in UTC; emails are
in their canonical form (`contract.events.canonical_email`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contract.events import EventType

GLOBAL = "GLOBAL"
TOTAL = "TOTAL"
USER_PREFIX = "USER#"
IP_PREFIX = "IP#"
MINUTE_PREFIX = "MINUTE#"
HOUR_PREFIX = "HOUR#"
BUCKET_INDEX = "by-bucket"
BUCKET = "bucket"  # the index's partition key: the item's sort key, on bucket items only
EXPIRES_AT = "expiresAt"  # the table's TTL attribute (epoch seconds)
FIRST_SEEN, LAST_SEEN = "firstSeen", "lastSeen"
BUCKET_RETENTION = timedelta(days=7)

# The counter attribute each event type adds to.
COUNTER_OF = {
    EventType.API_CALL: "calls",
    EventType.API_AUTH_FAILED: "authFailures",
    EventType.API_RATE_LIMITED: "rateLimited",
}
COUNTERS = tuple(COUNTER_OF.values())


def user_pk(email: str) -> str:
    return f"{USER_PREFIX}{email}"


def ip_pk(source_ip: str) -> str:
    return f"{IP_PREFIX}{source_ip}"


def minute_sk(at: datetime) -> str:
    return f"{MINUTE_PREFIX}{at.astimezone(UTC):%Y-%m-%dT%H:%M}"


def hour_sk(at: datetime) -> str:
    return f"{HOUR_PREFIX}{at.astimezone(UTC):%Y-%m-%dT%H}"


def bucket_start(sk: str) -> datetime:
    kind, _, stamp = sk.partition("#")
    fmt = "%Y-%m-%dT%H:%M" if kind + "#" == MINUTE_PREFIX else "%Y-%m-%dT%H"
    return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)


def expiry(sk: str) -> int:
    """A bucket item's TTL: its start plus the retention, in epoch seconds."""
    return int((bucket_start(sk) + BUCKET_RETENTION).timestamp())


# -- the exactly-once bookkeeping (consumer/EXACTLY_ONCE.md) ---------------------------------------


def intent_key(application: str, shard_id: str) -> dict[str, Any]:
    """The item holding a shard's claim and last flush range, per KCL application."""
    return {"pk": {"S": f"FLUSH#{application}"}, "sk": {"S": f"SHARD#{shard_id}"}}


def origin_key(origin: str) -> dict[str, Any]:
    """The item recording which record counts a re-driven origin (`contract.events.origin_id`)."""
    return {"pk": {"S": f"ORIGIN#{origin}"}, "sk": {"S": "CLAIM"}}


def watermark(shard_id: str) -> str:
    """The attribute holding the end of the last range this shard applied to an item."""
    return f"w_{shard_id}"


def read_counters(item: dict[str, Any]) -> dict[str, int]:
    """The counters of an item as DynamoDB returns it (absent ones are 0)."""
    return {name: int(item.get(name, {}).get("N", "0")) for name in COUNTERS}


def analytics_table_spec(table_name: str) -> dict[str, Any]:
    """`create_table` arguments; ecs/consumer.yaml declares the same table (tests/deploy checks)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": BUCKET, "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BUCKET_INDEX,
                "KeySchema": [
                    {"AttributeName": BUCKET, "KeyType": "HASH"},
                    {"AttributeName": "pk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "SSESpecification": {"Enabled": True},
    }
