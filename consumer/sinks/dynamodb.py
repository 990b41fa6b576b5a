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
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast

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
# Concurrent writers of one TOTAL item may move its firstSeen/lastSeen between our tries; rare.
_SEEN_ATTEMPTS = 4
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

        botocore already retries each call a few times (`consumer.aws.FLUSH_CONFIG`); this outer
        loop rides out an outage of up to `retry_for` seconds. Past that, `SinkUnavailable`: the
        processor exits without checkpointing and the records are replayed after the restart. An
        attempt stops at its first failed update, so the whole write ends within `retry_for` plus a
        few calls' worst case (the intent, then an update queued behind a stuck one).
        """
        deadline = self._monotonic() + self._retry_for
        for attempt in itertools.count(1):
            try:
                self._write_once(batch)
                return
            except SinkUnavailable as exc:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    raise
                if self._log is not None:
                    self._log.warning("flush_retry", attempt=attempt, error=str(exc)[:300])
                # Full jitter: concurrent shards must not hammer a recovering table in step.
                backoff = random.uniform(0, min(_MAX_BACKOFF, 0.5 * 2**attempt))  # noqa: S311
                self._sleep(min(backoff, remaining))

    def _write_once(self, batch: Batch) -> None:
        self._record_intent(batch.range)
        futures = [
            self._pool.submit(self._apply, key, counters, batch.range)
            for key, counters in batch.aggregate.items.items()
        ]
        # Stop at the first failure: in an outage every queued update would wait out its own
        # timeouts, and the flush would blow far past `retry_for`. Updates still running are
        # left to finish; they belong to this same range, which the watermarks make idempotent.
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        errors = [exc for f in done if (exc := f.exception()) is not None]
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
        seen: dict[str, Any] | None = None  # firstSeen/lastSeen as read back after a refusal
        for _ in range(_SEEN_ATTEMPTS):
            request = _counter_update(key, counters, flush_range, seen)
            try:
                self._client.update_item(
                    TableName=self._table, ReturnValuesOnConditionCheckFailure="ALL_OLD", **request
                )
            except ClientError as exc:
                if aws_error_code(exc) != "ConditionalCheckFailedException":
                    raise
                old = cast(dict[str, Any], exc.response.get("Item")) or self._read(key)
                if _applied(old, flush_range):
                    return  # this shard already applied this range to this item: a replay
                seen = old  # refused by firstSeen/lastSeen only: retry moving just what must move
                continue
            self._faults.hit("item-written")
            return
        raise SinkUnavailable(f"{key}: firstSeen/lastSeen kept changing under {_SEEN_ATTEMPTS} updates")

    def _read(self, key: ItemKey) -> dict[str, Any]:
        """The item as it is now, for a store that returns nothing with a refused condition."""
        reply = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}}, ConsistentRead=True
        )
        return cast(dict[str, Any], reply.get("Item", {}))


def _applied(item: dict[str, Any], flush_range: FlushRange) -> bool:
    watermark = item.get(f"w_{flush_range.shard_id}", {}).get("S")
    return watermark is not None and watermark >= flush_range.end


def _counter_update(
    key: ItemKey, counters: Counters, flush_range: FlushRange, seen: dict[str, Any] | None = None
) -> dict[str, Any]:
    sets = ["#w = :end"]
    conditions = ["(attribute_not_exists(#w) OR #w < :end)"]
    values: dict[str, Any] = {
        ":end": {"S": flush_range.end},
        ":calls": {"N": str(counters.calls)},
        ":auth": {"N": str(counters.auth_failures)},
        ":limited": {"N": str(counters.rate_limited)},
    }
    names = {"#w": f"w_{flush_range.shard_id}"}
    if counters.bucket is not None and counters.expires_at is not None:
        sets += ["#bucket = :bucket", "#ttl = :ttl"]
        values[":bucket"] = {"S": counters.bucket}
        values[":ttl"] = {"N": str(counters.expires_at)}
        names |= {"#bucket": "bucket", "#ttl": TTL_ATTRIBUTE}
    if counters.first_seen is not None and counters.last_seen is not None:
        seen_sets, seen_conditions, seen_values = _seen_bounds(
            rfc3339(counters.first_seen), rfc3339(counters.last_seen), seen
        )
        sets += seen_sets
        conditions += seen_conditions
        values |= seen_values
    return {
        "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
        "UpdateExpression": "ADD calls :calls, authFailures :auth, rateLimited :limited SET "
        + ", ".join(sets),
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _seen_bounds(
    first: str, last: str, seen: dict[str, Any] | None
) -> tuple[list[str], list[str], dict[str, Any]]:
    """SET clauses, conditions and values that only ever move firstSeen earlier and lastSeen later.

    A shard's events are not in timestamp order (many Lambda containers write to it), so a later
    flush may hold an earlier event. DynamoDB has no min/max: the first try assumes the usual case
    (firstSeen already earlier, lastSeen older) under conditions; when one refuses, the item read
    back says which bound must move, and the retry moves only that one. RFC 3339 strings of one
    format sort as times.
    """
    first_value, last_value = {":first": {"S": first}}, {":last": {"S": last}}
    if seen is None:
        return (
            ["firstSeen = if_not_exists(firstSeen, :first)", "lastSeen = :last"],
            [
                "(attribute_not_exists(firstSeen) OR firstSeen <= :first)",
                "(attribute_not_exists(lastSeen) OR lastSeen <= :last)",
            ],
            first_value | last_value,
        )
    sets, conditions, values = [], [], dict[str, Any]()
    if seen.get("firstSeen", {}).get("S", "~") > first:
        sets.append("firstSeen = :first")
        conditions.append("(attribute_not_exists(firstSeen) OR firstSeen > :first)")
        values |= first_value
    if seen.get("lastSeen", {}).get("S", "") < last:
        sets.append("lastSeen = :last")
        conditions.append("(attribute_not_exists(lastSeen) OR lastSeen < :last)")
        values |= last_value
    return sets, conditions, values
