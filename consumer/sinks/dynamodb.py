"""The analytics table's writer: the claim, the intent and the idempotent counter writes of a flush.

Each item update is `ADD` on the counters, guarded by the item's watermark for the writing shard;
consumer/EXACTLY_ONCE.md explains why that makes replays exact. DynamoDB cannot batch updates, so
a flush fans its updates out over a small thread pool; botocore's standard retry mode handles
throttling and transient errors of each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from consumer.aws import translated
from consumer.core.aggregate import Counters, ItemKey
from consumer.core.flush import Batch, FlushRange
from consumer.errors import SinkUnavailable, Superseded
from consumer.faults import FaultPoints
from contract.aws import aws_error_code
from contract.events import format_timestamp
from contract.retry import Retry
from contract.table import BUCKET, EXPIRES_AT, intent_key, origin_key, watermark

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Concurrent writers of one TOTAL item may move its firstSeen/lastSeen between our tries; rare.
_SEEN_ATTEMPTS = 4
_REFUSED = "ConditionalCheckFailedException"


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
        self._log = log
        self._faults = faults or FaultPoints()
        self._table = table_name
        self._application = application_name
        # Rides out an outage of up to `retry_for` seconds; full jitter keeps shards out of step.
        self._retry = Retry(
            (SinkUnavailable,), deadline=retry_for, base=1.0, cap=8.0, sleep=sleep, monotonic=monotonic
        )
        self._claims: dict[str, str] = {}  # shard -> our claim number (see `claim`)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ddb-flush")

    def claim(self, shard_id: str) -> FlushRange | None:
        """Bump the shard's claim number on its intent item and read the intent, in one atomic update.

        An earlier claimant's intent write is then either already visible here (and the caller cuts
        its replay at that range) or refused (`Superseded`), so two processors never apply
        differently cut ranges of one shard to the same items.
        """
        with translated(f"claiming the flushes of {shard_id}"):
            reply = self._client.update_item(
                TableName=self._table,
                Key=intent_key(self._application, shard_id),
                UpdateExpression="ADD claim :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )
        item = reply["Attributes"]
        self._claims[shard_id] = item["claim"]["N"]
        if "end" not in item:
            return None
        return FlushRange(shard_id, item.get("start", {}).get("S"), item["end"]["S"])

    def claim_origin(self, origin: str, record: str, expires_at: int) -> bool:
        def claim() -> bool:
            with translated(f"claiming the re-driven origin {origin}"):
                try:
                    self._client.update_item(
                        TableName=self._table,
                        Key=origin_key(origin),
                        UpdateExpression="SET #by = if_not_exists(#by, :me), #ttl = :ttl",
                        ConditionExpression="attribute_not_exists(#by) OR #by = :me",
                        ExpressionAttributeNames={"#by": "countedBy", "#ttl": EXPIRES_AT},
                        ExpressionAttributeValues={":me": {"S": record}, ":ttl": {"N": str(expires_at)}},
                    )
                except ClientError as exc:
                    if aws_error_code(exc) == _REFUSED:
                        return False  # another copy counts this origin
                    raise
            return True

        return self._retry.call(claim, on_retry=self._retrying)

    def write(self, batch: Batch) -> None:
        """Write the batch, retrying the whole (idempotent) write through outages for a bounded time.

        botocore already retries each call a few times (`consumer.aws.FLUSH_CONFIG`); this outer
        loop rides out an outage of up to `retry_for` seconds. Past that, `SinkUnavailable`: the
        processor exits without checkpointing and the records are replayed after the restart. An
        attempt stops at its first failed update, so the whole write ends within `retry_for` plus a
        few calls' worst case (the intent, then an update queued behind a stuck one).
        """
        self._retry.call(lambda: self._write_once(batch), on_retry=self._retrying)

    def _retrying(self, attempt: int, error: BaseException) -> None:
        if self._log is not None:
            self._log.warning("flush_retry", attempt=attempt, error=str(error)[:300])

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
        lasting = [error for error in errors if not isinstance(error, SinkUnavailable)]
        if lasting:
            raise lasting[0]  # misconfigured, or a bug: not worth riding out
        if errors:
            raise SinkUnavailable(f"{len(errors)} of {len(futures)} item updates failed: {errors[0]}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _record_intent(self, flush_range: FlushRange) -> None:
        shard_id = flush_range.shard_id
        values = {":end": {"S": flush_range.end}, ":claim": {"N": self._claims[shard_id]}}
        if flush_range.start is None:
            update = "SET #end = :end REMOVE #start"
        else:
            update, values[":start"] = "SET #end = :end, #start = :start", {"S": flush_range.start}
        with translated("recording the flush intent"):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=intent_key(self._application, shard_id),
                    UpdateExpression=update,
                    ConditionExpression="#claim = :claim",
                    ExpressionAttributeNames={"#end": "end", "#start": "start", "#claim": "claim"},
                    ExpressionAttributeValues=values,
                )
            except ClientError as exc:
                if aws_error_code(exc) == _REFUSED:
                    raise Superseded(f"{shard_id} was claimed by another record processor") from exc
                raise

    def _apply(self, key: ItemKey, counters: Counters, flush_range: FlushRange) -> None:
        seen: dict[str, Any] | None = None  # firstSeen/lastSeen as read back after a refusal
        for _ in range(_SEEN_ATTEMPTS):
            request = _counter_update(key, counters, flush_range, seen)
            with translated(f"updating {key}"):
                try:
                    self._client.update_item(
                        TableName=self._table, ReturnValuesOnConditionCheckFailure="ALL_OLD", **request
                    )
                except ClientError as exc:
                    if aws_error_code(exc) != _REFUSED:
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
    applied_to = item.get(watermark(flush_range.shard_id), {}).get("S")
    return applied_to is not None and applied_to >= flush_range.end


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
    names = {"#w": watermark(flush_range.shard_id)}
    if counters.bucket is not None and counters.expires_at is not None:
        sets += ["#bucket = :bucket", "#ttl = :ttl"]
        values[":bucket"] = {"S": counters.bucket}
        values[":ttl"] = {"N": str(counters.expires_at)}
        names |= {"#bucket": BUCKET, "#ttl": EXPIRES_AT}
    if counters.first_seen is not None and counters.last_seen is not None:
        seen_sets, seen_conditions, seen_values = _seen_bounds(
            format_timestamp(counters.first_seen), format_timestamp(counters.last_seen), seen
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
