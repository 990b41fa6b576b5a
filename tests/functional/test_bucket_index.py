"""`reads.of_bucket`: the keys-only index's keys, then the items, against moto's DynamoDB.

Tables created before the keys-only index have only `by-bucket` (projection ALL): reads fall back to
it while `by-bucket-keys` is missing or backfilling, so an upgrade in two steps (docs/deploy.md)
never breaks a reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from contract.aws import aws_error_code
from contract.table import BUCKET, BUCKET_INDEX, LEGACY_BUCKET_INDEX, analytics_table_spec, bucket_index
from reads import BATCH_GET_KEYS, INDEX_UNREADABLE, Table, of_bucket

NAME = "bucket-index-test"
HOUR = "HOUR#2026-12-07T17"


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def _create(client: Any, *indexes: dict[str, Any]) -> None:
    spec = analytics_table_spec(NAME)
    client.create_table(**{**spec, "GlobalSecondaryIndexes": list(indexes or spec["GlobalSecondaryIndexes"])})


def _put_users(client: Any, count: int, bucket: str = HOUR) -> list[str]:
    """`count` user hour items of `bucket` (and one of another hour, never listed)."""
    emails = [f"user{n:04d}@example.com" for n in range(count)]
    for n, email in enumerate(emails):
        client.put_item(
            TableName=NAME,
            Item={
                "pk": {"S": f"USER#{email}"},
                "sk": {"S": bucket},
                BUCKET: {"S": bucket},
                "calls": {"N": str(n)},
            },
        )
    other = "HOUR#2026-12-07T18"
    client.put_item(
        TableName=NAME, Item={"pk": {"S": "USER#late@example.com"}, "sk": {"S": other}, BUCKET: {"S": other}}
    )
    return emails


@pytest.mark.parametrize("count", [0, 1, BATCH_GET_KEYS, BATCH_GET_KEYS * 2 + 1])
def test_the_keys_only_index_lists_whole_items_in_pk_order(client: Any, count: int) -> None:
    _create(client)
    emails = _put_users(client, count)
    items = list(of_bucket(Table(client, NAME), HOUR, "USER#"))
    assert [item["pk"] for item in items] == [f"USER#{email}" for email in sorted(emails)]
    assert [item["calls"] for item in items] == list(range(count))  # attributes the index does not hold


def test_a_table_from_before_reads_through_its_old_index(client: Any) -> None:
    """Only `by-bucket` (ALL), as every stack created before this layout has."""
    _create(client, bucket_index(LEGACY_BUCKET_INDEX, "ALL"))
    emails = _put_users(client, 3)
    items = list(of_bucket(Table(client, NAME), HOUR, "USER#"))
    assert [(item["pk"], item["calls"]) for item in items] == [(f"USER#{e}", n) for n, e in enumerate(emails)]


def test_during_the_upgrade_both_indexes_give_the_same_items(client: Any) -> None:
    _create(client, bucket_index(BUCKET_INDEX, "KEYS_ONLY"), bucket_index(LEGACY_BUCKET_INDEX, "ALL"))
    _put_users(client, 5)
    table = Table(client, NAME)
    through_new = list(of_bucket(table, HOUR, "USER#"))
    through_old = list(of_bucket(Table(Backfilling(client), NAME), HOUR, "USER#"))
    assert through_new == through_old and len(through_new) == 5


def test_a_table_with_neither_index_names_the_index_it_needs(client: Any) -> None:
    spec = {k: v for k, v in analytics_table_spec(NAME).items() if k != "GlobalSecondaryIndexes"}
    spec["AttributeDefinitions"] = [a for a in spec["AttributeDefinitions"] if a["AttributeName"] != BUCKET]
    client.create_table(**spec)
    with pytest.raises(Exception) as refused:
        list(of_bucket(Table(client, NAME), HOUR, "USER#"))
    assert aws_error_code(refused.value) in INDEX_UNREADABLE  # moto: ResourceNotFoundException
    assert BUCKET_INDEX in str(refused.value)


def test_keys_left_unprocessed_are_asked_for_again(client: Any) -> None:
    """DynamoDB may answer part of a BatchGetItem (throttling, 16 MB): the rest is asked again."""
    _create(client)
    emails = _put_users(client, 7)
    stingy = Stingy(client, answer=3)
    waits: list[float] = []
    items = list(of_bucket(Table(stingy, NAME, sleep=waits.append), HOUR, "USER#"))
    assert [item["pk"] for item in items] == [f"USER#{email}" for email in emails]
    assert stingy.rounds == 3 and len(waits) == 2


def test_keys_never_processed_fail_the_read_rather_than_shorten_it(client: Any) -> None:
    _create(client)
    _put_users(client, 2)
    with pytest.raises(RuntimeError, match="2 keys still unprocessed"):
        list(of_bucket(Table(Stingy(client, answer=0), NAME, sleep=lambda _s: None), HOUR, "USER#"))


class Backfilling:
    """A client whose new index is still being built: DynamoDB refuses reads from it."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **request: Any) -> Any:
        if request.get("IndexName") == BUCKET_INDEX:
            error = self._client.exceptions.ClientError(
                {
                    "Error": {
                        "Code": "ValidationException",
                        "Message": "Cannot read from backfilling global secondary index",
                    }
                },
                "Query",
            )
            raise error
        return self._client.query(**request)


class Stingy:
    """Answers `answer` keys of each BatchGetItem and leaves the rest unprocessed, as DynamoDB may."""

    def __init__(self, client: Any, answer: int) -> None:
        self._client, self._answer, self.rounds = client, answer, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.rounds += 1
        ((table, request),) = RequestItems.items()
        now, later = request["Keys"][: self._answer], request["Keys"][self._answer :]
        reply = self._client.batch_get_item(RequestItems={table: {"Keys": now}}) if now else {"Responses": {}}
        return {**reply, "UnprocessedKeys": {table: {"Keys": later}} if later else {}}
