"""Reading the analytics table: key and index queries only, never a Scan (tests check it).

Standard library only: the DynamoDB client is passed in (boto3's), so the operator CLI and the
usage endpoint's Lambda share these reads. Items come back as plain Python values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.table import BUCKET, BUCKET_INDEX


@dataclass(frozen=True, slots=True)
class Table:
    """One analytics table and the client to read it with."""

    client: Any
    name: str

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        reply = self.client.get_item(TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": sk}})
        found = reply.get("Item")
        return plain(found) if found else None

    def partition(self, pk: str) -> Iterator[dict[str, Any]]:
        """Every item of `pk`, in sort-key order."""
        yield from self._query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
        )

    def between(self, pk: str, first_sk: str, last_sk: str) -> Iterator[dict[str, Any]]:
        """The items of `pk` whose sort keys lie in [first_sk, last_sk], in order."""
        yield from self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={":pk": {"S": pk}, ":first": {"S": first_sk}, ":last": {"S": last_sk}},
        )

    def of_bucket(self, bucket: str, pk_prefix: str) -> Iterator[dict[str, Any]]:
        """Every item of one time bucket whose pk starts with `pk_prefix` (the `by-bucket` index)."""
        yield from self._query(
            IndexName=BUCKET_INDEX,
            KeyConditionExpression="#bucket = :bucket AND begins_with(pk, :prefix)",
            ExpressionAttributeNames={"#bucket": BUCKET},
            ExpressionAttributeValues={":bucket": {"S": bucket}, ":prefix": {"S": pk_prefix}},
        )

    def _query(self, **query: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            page = self.client.query(
                TableName=self.name, **query, **({"ExclusiveStartKey": start} if start else {})
            )
            yield from (plain(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return


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
