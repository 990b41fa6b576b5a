"""An in-memory counter sink that behaves like `DynamoDBSink`, for tests and benchmarks.

One `MemoryStore` plays the table; each `MemorySink` on it plays one record processor's sink, with
its own claims: a sink whose claim was superseded by a newer one is refused (`Superseded`) before
any counter moves, as the DynamoDB sink is. tests/functional/test_sink_contract.py runs the same
cases against both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consumer.core.aggregate import Counters, ItemKey
from consumer.core.flush import Batch, FlushRange
from consumer.errors import SinkUnavailable, Superseded
from contract.events import format_timestamp
from contract.table import COUNTERS, EXPIRES_AT, FIRST_SEEN, LAST_SEEN, watermark


@dataclass
class MemoryStore:
    """The table: items, each shard's last recorded range and its claim number."""

    items: dict[ItemKey, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, FlushRange] = field(default_factory=dict)
    claim_numbers: dict[str, int] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # re-driven origin -> the record counting it


class MemorySink:
    def __init__(self, store: MemoryStore | None = None, *, fail_after_items: int | None = None) -> None:
        self.store = store or MemoryStore()
        # A fault point: an attempt fails with `SinkUnavailable` after this many item updates.
        self.fail_after_items = fail_after_items
        self.writes: list[FlushRange] = []
        self._claims: dict[str, int] = {}

    @property
    def items(self) -> dict[ItemKey, dict[str, Any]]:
        return self.store.items

    def claim(self, shard_id: str) -> FlushRange | None:
        number = self.store.claim_numbers.get(shard_id, 0) + 1
        self.store.claim_numbers[shard_id] = self._claims[shard_id] = number
        return self.store.intents.get(shard_id)

    def claim_origin(self, origin: str, record: str, expires_at: int) -> bool:
        return self.store.origins.setdefault(origin, record) == record

    def write(self, batch: Batch) -> None:
        shard_id = batch.range.shard_id
        if self.store.claim_numbers.get(shard_id) != self._claims[shard_id]:
            raise Superseded(f"{shard_id} was claimed by another record processor")
        self.store.intents[shard_id] = batch.range
        for written, (key, counters) in enumerate(batch.aggregate.items.items()):
            if self.fail_after_items is not None and written >= self.fail_after_items:
                raise SinkUnavailable(f"injected fault after {written} item updates")
            self._apply(key, counters, batch.range)
        self.writes.append(batch.range)

    def _apply(self, key: ItemKey, counters: Counters, flush_range: FlushRange) -> None:
        item = self.store.items.setdefault(key, dict.fromkeys(COUNTERS, 0))
        mark = watermark(flush_range.shard_id)
        if item.get(mark, "") >= flush_range.end:
            return
        item[mark] = flush_range.end
        item["calls"] += counters.calls
        item["authFailures"] += counters.auth_failures
        item["rateLimited"] += counters.rate_limited
        if counters.first_seen and counters.last_seen:
            first, last = format_timestamp(counters.first_seen), format_timestamp(counters.last_seen)
            item[FIRST_SEEN] = min(item.get(FIRST_SEEN, first), first)
            item[LAST_SEEN] = max(item.get(LAST_SEEN, last), last)
        if counters.expires_at is not None:
            item[EXPIRES_AT] = counters.expires_at
