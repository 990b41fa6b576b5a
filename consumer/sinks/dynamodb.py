"""The analytics table: its schema, and the idempotent counter writes of a flush.

Each item update is `ADD` on the counters, guarded by the item's watermark for the writing shard
(`w_<shardId>`, a position key): see `consumer.core.flush` for why that makes replays exact.
DynamoDB cannot batch updates, so a flush fans its updates out over a small thread pool; botocore's
standard retry mode handles throttling and transient errors with backoff and jitter.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from authorizer.errors import aws_error_code
from consumer.core.aggregate import Counters, ItemKey, rfc3339
from consumer.core.flush import Batch, FlushRange
from consumer.errors import SinkUnavailable, Superseded
from consumer.faults import FaultPoints

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BUCKET_INDEX = "by-bucket"
_MAX_BACKOFF = 8.0
TTL_ATTRIBUTE = "expiresAt"
COUNTERS = ("calls", "authFailures", "rateLimited")  # the counter attributes of every analytics item


def read_counters(item: dict[str, Any]) -> dict[str, int]:
    """The counters of an analytics item as read from DynamoDB (absent ones are 0)."""
    return {name: int(item.get(name, {}).get("N", "0")) for name in COUNTERS}


def analytics_table_spec(table_name: str) -> dict[str, Any]:
    """`create_table` arguments. The GSI lists every user/IP/global item of one time bucket."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "bucket", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BUCKET_INDEX,
                "KeySchema": [
                    {"AttributeName": "bucket", "KeyType": "HASH"},
                    {"AttributeName": "pk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "SSESpecification": {"Enabled": True},
    }


class DynamoDBSink:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        application_name: str,
        *,
        concurrency: int = 16,
        retry_for: float = 60.0,
        faults: FaultPoints | None = None,
        log: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._retry_for = retry_for
        self._log = log
        self._sleep = sleep
        self._monotonic = monotonic
        self._faults = faults or FaultPoints()
        self._table = table_name
        self._intent_pk = f"FLUSH#{application_name}"
        self._claims: dict[str, str] = {}  # shard -> our claim number (see `claim`)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ddb-flush")

    def claim(self, shard_id: str) -> FlushRange | None:
        """Bump the shard's claim number on its intent item and read the intent, in one atomic update.

        An earlier claimant's intent write is then either already visible here (and the caller cuts
        its replay at that range) or refused (`Superseded`), so two processors never apply
        differently cut ranges of one shard to the same items.
        """
        try:
            reply = self._client.update_item(
                TableName=self._table,
                Key=self._intent_key(shard_id),
                UpdateExpression="ADD claim :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )
        except (ClientError, BotoCoreError) as exc:
            raise SinkUnavailable(f"claiming the flushes of {shard_id}: {exc}") from exc
        item = reply["Attributes"]
        self._claims[shard_id] = item["claim"]["N"]
        if "end" not in item:
            return None
        return FlushRange(shard_id, item.get("start", {}).get("S"), item["end"]["S"])

    def write(self, batch: Batch) -> None:
        """Write the batch, retrying the whole (idempotent) write through outages for a bounded time.

        botocore already retries each call a few times; this outer loop rides out an outage of
        up to `retry_for` seconds. Past that, `SinkUnavailable`: the processor exits without
        checkpointing and the records are replayed after the restart.
        """
        deadline = self._monotonic() + self._retry_for
        for attempt in itertools.count(1):
            try:
                self._write_once(batch)
                return
            except SinkUnavailable as exc:
                if self._monotonic() >= deadline:
                    raise
                if self._log is not None:
                    self._log.warning("flush_retry", attempt=attempt, error=str(exc)[:300])
                # Full jitter: concurrent shards must not hammer a recovering table in step.
                self._sleep(random.uniform(0, min(_MAX_BACKOFF, 0.5 * 2**attempt)))  # noqa: S311

    def _write_once(self, batch: Batch) -> None:
        self._record_intent(batch.range)
        futures = [
            self._pool.submit(self._apply, key, counters, batch.range)
            for key, counters in batch.aggregate.items.items()
        ]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise SinkUnavailable(f"{len(errors)} of {len(futures)} item updates failed: {errors[0]}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _intent_key(self, shard_id: str) -> dict[str, Any]:
        return {"pk": {"S": self._intent_pk}, "sk": {"S": f"SHARD#{shard_id}"}}

    def _record_intent(self, flush_range: FlushRange) -> None:
        shard_id = flush_range.shard_id
        values = {":end": {"S": flush_range.end}, ":claim": {"N": self._claims[shard_id]}}
        if flush_range.start is None:
            update = "SET #end = :end REMOVE #start"
        else:
            update, values[":start"] = "SET #end = :end, #start = :start", {"S": flush_range.start}
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._intent_key(shard_id),
                UpdateExpression=update,
                ConditionExpression="#claim = :claim",
                ExpressionAttributeNames={"#end": "end", "#start": "start", "#claim": "claim"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                raise Superseded(f"{shard_id} was claimed by another record processor") from exc
            raise SinkUnavailable(f"recording the flush intent: {exc}") from exc
        except BotoCoreError as exc:
            raise SinkUnavailable(f"recording the flush intent: {exc}") from exc

    def _apply(self, key: ItemKey, counters: Counters, flush_range: FlushRange) -> None:
        try:
            self._client.update_item(TableName=self._table, **_counter_update(key, counters, flush_range))
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                return  # this shard already applied this range to this item: a replay
            raise
        self._faults.hit("item-written")


def _counter_update(key: ItemKey, counters: Counters, flush_range: FlushRange) -> dict[str, Any]:
    sets = ["#w = :end"]
    values: dict[str, Any] = {
        ":end": {"S": flush_range.end},
        ":calls": {"N": str(counters.calls)},
        ":auth": {"N": str(counters.auth_failures)},
        ":limited": {"N": str(counters.rate_limited)},
    }
    if counters.bucket is not None and counters.expires_at is not None:
        sets += ["#bucket = :bucket", "#ttl = :ttl"]
        values[":bucket"] = {"S": counters.bucket}
        values[":ttl"] = {"N": str(counters.expires_at)}
    if counters.first_seen is not None and counters.last_seen is not None:
        sets += ["firstSeen = if_not_exists(firstSeen, :first)", "lastSeen = :last"]
        values[":first"] = {"S": rfc3339(counters.first_seen)}
        values[":last"] = {"S": rfc3339(counters.last_seen)}
    names = {"#w": f"w_{flush_range.shard_id}"}
    if counters.bucket is not None:
        names |= {"#bucket": "bucket", "#ttl": TTL_ATTRIBUTE}
    return {
        "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
        "UpdateExpression": "ADD calls :calls, authFailures :auth, rateLimited :limited SET "
        + ", ".join(sets),
        "ConditionExpression": "attribute_not_exists(#w) OR #w < :end",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
