"""Reading the analytics table: key and index queries only, never a Scan (tests check it).

Standard library only: the DynamoDB client is passed in (boto3's), so the operator CLI and the
usage endpoint's Lambda share these reads. Items come back as plain Python values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.aws import aws_error_code
from contract.table import BUCKET, BUCKET_INDEX, LEGACY_BUCKET_INDEX

BATCH_GET_KEYS = 100  # DynamoDB's most keys in one BatchGetItem
BATCH_GET_ATTEMPTS = 8  # rounds of unprocessed keys before giving up (throttling that does not pass)
# What a query of an index the table cannot read answers: DynamoDB says ValidationException for an
# index that is missing or still backfilling; moto says ResourceNotFoundException when it is missing.
INDEX_UNREADABLE = frozenset({"ValidationException", "ResourceNotFoundException"})


@dataclass(frozen=True, slots=True)
class Table:
    """One analytics table and the client to read it with."""

    client: Any
    name: str
    sleep: Callable[[float], None] = time.sleep  # between rounds of unprocessed keys

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        reply = self.client.get_item(TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": sk}})
        found = reply.get("Item")
        return plain(found) if found else None

    def partition(self, pk: str) -> Iterator[dict[str, Any]]:
        """Every item of `pk`, in sort-key order."""
        yield from self.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}})

    def between(self, pk: str, first_sk: str, last_sk: str) -> Iterator[dict[str, Any]]:
        """The items of `pk` whose sort keys lie in [first_sk, last_sk], in order."""
        yield from self.query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={":pk": {"S": pk}, ":first": {"S": first_sk}, ":last": {"S": last_sk}},
        )

    def query(self, **query: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            page = self.client.query(
                TableName=self.name, **query, **({"ExclusiveStartKey": start} if start else {})
            )
            yield from (plain(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return


def of_bucket(table: Table, bucket: str, pk_prefix: str) -> Iterator[dict[str, Any]]:
    """Every item of one time bucket whose pk starts with `pk_prefix`, in pk order: the keys from
    the keys-only index, then the items themselves (an item that expired meanwhile is left out)."""
    query = {
        "KeyConditionExpression": "#bucket = :bucket AND begins_with(pk, :prefix)",
        "ExpressionAttributeNames": {"#bucket": BUCKET},
        "ExpressionAttributeValues": {":bucket": {"S": bucket}, ":prefix": {"S": pk_prefix}},
    }
    try:
        keys = [
            {"pk": {"S": key["pk"]}, "sk": {"S": key["sk"]}}
            for key in table.query(IndexName=BUCKET_INDEX, **query)
        ]
    except Exception as exc:  # the client's error type: this package never imports botocore
        if aws_error_code(exc) not in INDEX_UNREADABLE:
            raise
        yield from _legacy_of_bucket(table, query, exc)
        return
    for start in range(0, len(keys), BATCH_GET_KEYS):
        yield from _items(table, keys[start : start + BATCH_GET_KEYS])


def _legacy_of_bucket(table: Table, query: dict[str, Any], refused: Exception) -> Iterator[dict[str, Any]]:
    """A table from before the keys-only index: its index projects every attribute. If it has
    neither index, the keys-only index's error is the one to see."""
    answered = False
    try:
        for item in table.query(IndexName=LEGACY_BUCKET_INDEX, **query):
            answered = True
            yield item
    except Exception as exc:
        if answered or aws_error_code(exc) not in INDEX_UNREADABLE:
            raise
        raise refused from None


def _items(table: Table, keys: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The items of `keys` (at most 100), in their order, asking again for what DynamoDB left
    unprocessed (it does so under throttling or past 16 MB)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    wanted = keys
    for attempt in range(BATCH_GET_ATTEMPTS):
        reply = table.client.batch_get_item(RequestItems={table.name: {"Keys": wanted}})
        for item in reply.get("Responses", {}).get(table.name, []):
            found[item["pk"]["S"], item["sk"]["S"]] = item
        wanted = reply.get("UnprocessedKeys", {}).get(table.name, {}).get("Keys", [])
        if not wanted:
            break
        if attempt + 1 < BATCH_GET_ATTEMPTS:
            table.sleep(min(0.05 * 2**attempt, 2.0))
    else:
        raise RuntimeError(
            f"{table.name}: {len(wanted)} keys still unprocessed after {BATCH_GET_ATTEMPTS} rounds"
        )
    for key in keys:
        item = found.get((key["pk"]["S"], key["sk"]["S"]))
        if item is not None:
            yield plain(item)


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as Python values: numbers as int (or float), sets as sets, binary as bytes."""
    return {name: _value(value) for name, value in item.items()}


def _value(value: dict[str, Any]) -> Any:
    kind, raw = next(iter(value.items()))
    if kind == "N":
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    if kind in ("SS", "L"):
        return set(raw) if kind == "SS" else [_value(v) for v in raw]
    if kind == "NS":
        return {int(v) for v in raw}
    if kind == "M":
        return plain(raw)
    return raw  # S, B, BOOL; NULL is None


def hours(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hours that [start, end) touches, in order."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    count = max(
        1, int((end - first).total_seconds() // 3600) + (1 if (end - first) % timedelta(hours=1) else 0)
    )
    return [first + timedelta(hours=n) for n in range(count)]


def counters_with(item: dict[str, Any], prefix: str) -> dict[str, int]:
    """The counters of an item whose attribute names start with `prefix`, by the rest of the name."""
    return {
        name[len(prefix) :]: value
        for name, value in item.items()
        if name.startswith(prefix) and isinstance(value, int)
    }
