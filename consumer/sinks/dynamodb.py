"""The analytics table's writer: the claim, the intent and the idempotent item writes of a flush.

Each item update `ADD`s its counters and `SET`s its attributes under the item's watermark for the
writing shard; consumer/EXACTLY_ONCE.md explains why that makes replays exact. A flush writes in two
phases: every item but the GLOBAL ones (and the archive pages), then the GLOBAL items with the
active users the first phase created (`consumer.core.flush.second_phase`). DynamoDB cannot batch
updates, so each phase fans out over a small thread pool; botocore's standard retry mode handles
throttling and transient errors of each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from consumer.aws import translated
from consumer.core.aggregate import MEMBER_CAP, ItemKey, ItemUpdate
from consumer.core.flush import Batch, FlushRange, ItemResult, Page, archive_pages, first_phase, second_phase
from consumer.errors import SinkUnavailable, Superseded
from consumer.faults import FaultPoints
from contract.aws import aws_error_code
from contract.events import format_timestamp
from contract.retry import Retry
from contract.table import (
    ACTIVE_SINCE,
    EXPIRES_AT,
    FIRST_SEEN,
    LAST_SEEN,
    intent_key,
    origin_key,
    watermark,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Counters per UpdateItem: well under DynamoDB's 300 operators and 4 KB per expression (`parts`).
MAX_ADDS_PER_UPDATE = 100
# Concurrent writers of one TOTAL item may move its firstSeen/lastSeen between our tries; rare.
_SEEN_ATTEMPTS = 4
_REFUSED = "ConditionalCheckFailedException"
FlushResult = dict[ItemKey, ItemResult]
_deserialize = TypeDeserializer().deserialize


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
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._log = log
        self._on_retry = on_retry
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

    def write(self, batch: Batch) -> FlushResult:
        """Write the batch, retrying the whole (idempotent) write through outages for a bounded time.

        botocore already retries each call a few times (`consumer.aws.FLUSH_CONFIG`); this outer
        loop rides out an outage of up to `retry_for` seconds. Past that, `SinkUnavailable`: the
        processor exits without checkpointing and the records are replayed after the restart. An
        attempt stops at its first failed update, so the whole write ends within `retry_for` plus a
        few calls' worst case (the intent, then an update queued behind a stuck one).
        """
        applied: set[ItemKey] = set()  # by any attempt of this write: not a replay's skip
        results = self._retry.call(lambda: self._write_once(batch, applied), on_retry=self._retrying)
        return {key: ItemResult(key in applied, result.values) for key, result in results.items()}

    def _retrying(self, attempt: int, error: BaseException) -> None:
        self._on_retry()
        if self._log is not None:
            self._log.warning("flush_retry", attempt=attempt, error=str(error)[:300])

    def _write_once(self, batch: Batch, applied: set[ItemKey]) -> FlushResult:
        self._record_intent(batch.range)
        pages = [self._pool.submit(self._put_page, page) for page in archive_pages(batch)]
        results = self._apply_all(first_phase(batch), batch.range, pages)
        results |= self._apply_all(second_phase(batch, results), batch.range, [])
        applied.update(key for key, result in results.items() if result.applied)
        return results

    def _apply_all(
        self, updates: dict[ItemKey, ItemUpdate], flush_range: FlushRange, also: list[Future[None]]
    ) -> FlushResult:
        futures = {
            self._pool.submit(self._apply, key, update, flush_range): key for key, update in updates.items()
        }
        # Stop at the first failure: in an outage every queued update would wait out its own
        # timeouts, and the flush would blow far past `retry_for`. Updates still running are
        # left to finish; they belong to this same range, which the watermarks make idempotent.
        everything: list[Future[Any]] = [*futures, *also]
        done, pending = wait(everything, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        errors = [exc for f in done if (exc := f.exception()) is not None]
        lasting = [error for error in errors if not isinstance(error, SinkUnavailable)]
        if lasting:
            raise lasting[0]  # misconfigured, or a bug: not worth riding out
        if errors or pending:
            raise SinkUnavailable(f"{len(errors)} of {len(done) + len(pending)} writes failed: {errors[:1]}")
        return {key: future.result() for future, key in futures.items()}

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

    def _apply(self, key: ItemKey, update: ItemUpdate, flush_range: FlushRange) -> ItemResult:
        """One item's update, in as many parts as DynamoDB's expression limits need (`parts`)."""
        results = [self._apply_part(key, part, flush_range, n) for n, part in enumerate(parts(update))]
        return ItemResult(any(result.applied for result in results), results[-1].values)

    def _apply_part(self, key: ItemKey, update: ItemUpdate, flush_range: FlushRange, part: int) -> ItemResult:
        old: dict[str, Any] | None = None  # the item as a refused update read it back
        for _ in range(_SEEN_ATTEMPTS):
            request = _item_update(key, update, flush_range, old, part)
            with translated(f"updating {key}"):
                try:
                    reply = self._client.update_item(
                        TableName=self._table,
                        ReturnValues="ALL_NEW",  # the whole item, at no extra cost: what alerts read
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **request,
                    )
                except ClientError as exc:
                    if aws_error_code(exc) != _REFUSED:
                        raise
                    old = cast(dict[str, Any], exc.response.get("Item")) or self._read(key)
                    if _applied(old, flush_range, part):
                        return ItemResult(False, _plain(old))  # this shard wrote this range here: a replay
                    continue  # refused by firstSeen/lastSeen or a full set only: retry without those
            self._faults.hit("item-written")
            return ItemResult(True, _plain(reply.get("Attributes", {})))
        raise SinkUnavailable(f"{key}: firstSeen/lastSeen kept changing under {_SEEN_ATTEMPTS} updates")

    def _put_page(self, page: Page) -> None:
        item: dict[str, Any] = {
            "pk": {"S": page.pk},
            "sk": {"S": page.sk},
            "data": {"B": page.data},
            EXPIRES_AT: {"N": str(page.expires_at)},
        }
        with translated("writing an archive page"):
            self._client.put_item(TableName=self._table, Item=item)
        self._faults.hit("page-written")

    def _read(self, key: ItemKey) -> dict[str, Any]:
        """The item as it is now, for a store that returns nothing with a refused condition."""
        reply = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}}, ConsistentRead=True
        )
        return cast(dict[str, Any], reply.get("Item", {}))


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB's attribute map as Python values, counters as ints."""
    values = {name: _deserialize(value) for name, value in item.items()}
    return {
        name: int(v) if isinstance(v, Decimal) and v == v.to_integral_value() else v
        for name, v in values.items()
    }


def _applied(item: dict[str, Any], flush_range: FlushRange, part: int = 0) -> bool:
    applied_to = item.get(watermark(flush_range.shard_id, part), {}).get("S")
    return applied_to is not None and applied_to >= flush_range.end


def parts(update: ItemUpdate) -> list[ItemUpdate]:
    """An item's update cut to DynamoDB's expression limits (300 operators, 4 KB per expression).

    An endpoint's hour can hold hundreds of latency-histogram counters, a GLOBAL hour hundreds of
    endpoints: one update over the limit is refused every time, and would stop the shard. Each part
    has its own watermark (`watermark(shard, part)`), so each is applied exactly once on its own.
    The cut depends only on the update, so a replay of the range cuts it the same way.
    """
    counters = sorted(update.adds.items())
    if len(counters) <= MAX_ADDS_PER_UPDATE:
        return [update]
    chunks = [counters[i : i + MAX_ADDS_PER_UPDATE] for i in range(0, len(counters), MAX_ADDS_PER_UPDATE)]
    first = replace(update, adds=dict(chunks[0]))
    return [first] + [ItemUpdate(adds=dict(chunk)) for chunk in chunks[1:]]


class _Expression:
    """An update's clauses, with a placeholder for every name and value."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.adds: list[str] = []
        self.sets: list[str] = []
        self.conditions: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: dict[str, Any]) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def request(self, key: ItemKey) -> dict[str, Any]:
        clauses = [f"ADD {', '.join(self.adds)}"] if self.adds else []
        return {
            "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            "UpdateExpression": " ".join([*clauses, f"SET {', '.join(self.sets)}"]),
            "ConditionExpression": " AND ".join(self.conditions),
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": self.values,
        }


def _item_update(
    key: ItemKey,
    update: ItemUpdate,
    flush_range: FlushRange,
    old: dict[str, Any] | None = None,
    part: int = 0,
) -> dict[str, Any]:
    """The UpdateItem of one item or part; `old`, the item read back after a refusal, moves only what must."""
    e = _Expression()
    mark, end = e.name(watermark(flush_range.shard_id, part)), e.value({"S": flush_range.end})
    e.sets.append(f"{mark} = {end}")
    e.conditions.append(f"(attribute_not_exists({mark}) OR {mark} < {end})")
    e.adds += [f"{e.name(name)} {e.value({'N': str(amount)})}" for name, amount in update.adds.items()]
    e.sets += [f"{e.name(name)} = {e.value(_typed(value))}" for name, value in update.sets.items()]
    if update.active:
        since = e.name(ACTIVE_SINCE)
        e.sets.append(f"{since} = if_not_exists({since}, {e.value({'S': flush_range.marker})})")
    for name, members in update.members.items():
        if len((old or {}).get(name, {}).get("SS", ())) < MEMBER_CAP:  # full: these members stay out
            attribute = e.name(name)
            e.adds.append(f"{attribute} {e.value({'SS': sorted(members)[:MEMBER_CAP]})}")
            e.conditions.append(f"(attribute_not_exists({attribute}) OR size({attribute}) < :cap)")
            e.values[":cap"] = {"N": str(MEMBER_CAP)}
    if update.first_seen is not None and update.last_seen is not None:
        first, last = format_timestamp(update.first_seen), format_timestamp(update.last_seen)
        _seen_bounds(e, first, last, old)
    return e.request(key)


def _typed(value: str | int) -> dict[str, str]:
    return {"N": str(value)} if isinstance(value, int) else {"S": value}


def _seen_bounds(e: _Expression, first: str, last: str, old: dict[str, Any] | None) -> None:
    """SET clauses and conditions that only ever move firstSeen earlier and lastSeen later.

    A shard's events are not in timestamp order (many Lambda containers write to it), so a later
    flush may hold an earlier event. DynamoDB has no min/max: the first try assumes the usual case
    (firstSeen already earlier, lastSeen older) under conditions; when one refuses, the item read
    back says which bound must move, and the retry moves only that one. RFC 3339 strings of one
    format sort as times.
    """
    if old is None:
        first_seen, last_seen = e.name(FIRST_SEEN), e.name(LAST_SEEN)
        earliest, latest = e.value({"S": first}), e.value({"S": last})
        e.sets += [f"{first_seen} = if_not_exists({first_seen}, {earliest})", f"{last_seen} = {latest}"]
        e.conditions += [
            f"(attribute_not_exists({first_seen}) OR {first_seen} <= {earliest})",
            f"(attribute_not_exists({last_seen}) OR {last_seen} <= {latest})",
        ]
        return
    if old.get(FIRST_SEEN, {}).get("S", "~") > first:
        first_seen, earliest = e.name(FIRST_SEEN), e.value({"S": first})
        e.sets.append(f"{first_seen} = {earliest}")
        e.conditions.append(f"(attribute_not_exists({first_seen}) OR {first_seen} > {earliest})")
    if old.get(LAST_SEEN, {}).get("S", "") < last:
        last_seen, latest = e.name(LAST_SEEN), e.value({"S": last})
        e.sets.append(f"{last_seen} = {latest}")
        e.conditions.append(f"(attribute_not_exists({last_seen}) OR {last_seen} < {latest})")
