"""The keys table: create, list, revoke and look up keys, with an injected boto3 DynamoDB client.

Only the SHA-256 of a key is stored. DynamoDB and botocore errors are translated into
`KeyStoreUnavailable` / `KeyNotFound` here, where the calls are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from authorizer.errors import KeyNotFound, KeyStoreUnavailable
from authorizer.keys import generate_key, hash_key
from contract.aws import aws_error_code
from contract.events import canonical_email, format_epoch
from contract.plans import get_plan

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ACTIVE = "active"
REVOKED = "revoked"
LAST_USED_RESOLUTION_SECONDS = 300  # last-used time is advisory: write it at most this often per key


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    key_hash: str
    email: str
    status: str
    plan: str
    per_second: int
    per_minute: int
    created_at: str
    last_used_at: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


def create_key(
    client: DynamoDBClient, table: str, email: str, plan: str, clock: Callable[[], float]
) -> tuple[str, str]:
    """Store a new active key and return `(key_id, secret)`; the secret is never stored."""
    limits = get_plan(plan)
    email = canonical_email(email)  # the one identity the consumer counts by (contract.events)
    key_id, secret = generate_key()
    item = {
        "key_id": {"S": key_id},
        "key_hash": {"S": hash_key(secret)},
        "email": {"S": email},
        "status": {"S": ACTIVE},
        "plan": {"S": limits.name},
        "per_second": {"N": str(limits.per_second)},
        "per_minute": {"N": str(limits.per_minute)},
        "created_at": {"S": format_epoch(clock())},
    }
    with _translated(table):
        client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(key_id)")
    return key_id, secret


def list_keys(client: DynamoDBClient, table: str) -> list[KeyRecord]:
    """Every key, oldest first (an admin scan; the request path never scans)."""
    records: list[KeyRecord] = []
    with _translated(table):
        for page in client.get_paginator("scan").paginate(TableName=table):
            records.extend(_record(item) for item in page.get("Items", []))
    return sorted(records, key=lambda record: (record.created_at, record.key_id))


def revoke_key(client: DynamoDBClient, table: str, key_id: str) -> None:
    try:
        client.update_item(
            TableName=table,
            Key={"key_id": {"S": key_id}},
            UpdateExpression="SET #status = :revoked",
            ConditionExpression="attribute_exists(key_id)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":revoked": {"S": REVOKED}},
        )
    except ClientError as exc:
        if aws_error_code(exc) == "ConditionalCheckFailedException":
            raise KeyNotFound(key_id) from exc
        raise KeyStoreUnavailable(f"{table}: {aws_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise KeyStoreUnavailable(f"{table}: {exc}") from exc


def get_key(client: DynamoDBClient, table: str, key_id: str, *, consistent: bool = False) -> KeyRecord | None:
    """The key's record, or None; `consistent` sees a key written a moment ago (at twice the read cost)."""
    with _translated(table):
        response = client.get_item(TableName=table, Key={"key_id": {"S": key_id}}, ConsistentRead=consistent)
    item = response.get("Item")
    return _record(item) if item else None


def touch_last_used(client: DynamoDBClient, table: str, key_id: str, now: float) -> None:
    """Record use, skipping the write when a recent one exists (the condition keeps it cheap)."""
    try:
        client.update_item(
            TableName=table,
            Key={"key_id": {"S": key_id}},
            UpdateExpression="SET last_used_at = :now",
            ConditionExpression="attribute_exists(key_id) AND "
            "(attribute_not_exists(last_used_at) OR last_used_at < :stale)",
            ExpressionAttributeValues={
                ":now": {"S": format_epoch(now)},
                ":stale": {"S": format_epoch(now - LAST_USED_RESOLUTION_SECONDS)},
            },
        )
    except ClientError as exc:
        if aws_error_code(exc) != "ConditionalCheckFailedException":
            raise KeyStoreUnavailable(f"{table}: {aws_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise KeyStoreUnavailable(f"{table}: {exc}") from exc


@contextmanager
def _translated(table: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        raise KeyStoreUnavailable(f"{table}: {aws_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise KeyStoreUnavailable(f"{table}: {exc}") from exc


def _record(item: dict[str, Any]) -> KeyRecord:
    try:
        return KeyRecord(
            key_id=item["key_id"]["S"],
            key_hash=item["key_hash"]["S"],
            email=item["email"]["S"],
            status=item["status"]["S"],
            plan=item["plan"]["S"],
            per_second=int(item["per_second"]["N"]),
            per_minute=int(item["per_minute"]["N"]),
            created_at=item["created_at"]["S"],
            last_used_at=item.get("last_used_at", {}).get("S"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreUnavailable(f"malformed key item: {type(exc).__name__}") from exc
