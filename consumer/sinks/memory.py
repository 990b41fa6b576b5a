"""An in-memory counter sink that behaves like `DynamoDBSink`, for tests and benchmarks.

One `MemoryStore` plays the table; each `MemorySink` on it plays one record processor's sink, with
its own claims: a sink whose claim was superseded by a newer one is refused (`Superseded`) before
any counter moves, as the DynamoDB sink is. It writes the same two phases, returns what DynamoDB
returns (the whole item, new or as a replay finds it written) and bounds
string sets the same way. tests/functional/test_sink_contract.py runs the same cases against both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consumer.core.aggregate import MEMBER_CAP, ItemKey, ItemUpdate
from consumer.core.flush import Batch, FlushRange, ItemResult, archive_pages, first_phase, second_phase
from consumer.errors import SinkUnavailable, Superseded
from contract.events import format_timestamp
from contract.table import ACTIVE_SINCE, FIRST_SEEN, LAST_SEEN, watermark

FlushResult = dict[ItemKey, ItemResult]


@dataclass
class MemoryStore:
    """The table: items, archive pages, each shard's last range and claim number, re-drive origins."""

    items: dict[ItemKey, dict[str, Any]] = field(default_factory=dict)
    pages: dict[ItemKey, bytes] = field(default_factory=dict)
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

    def write(self, batch: Batch) -> FlushResult:
        shard_id = batch.range.shard_id
        if self.store.claim_numbers.get(shard_id) != self._claims[shard_id]:
            raise Superseded(f"{shard_id} was claimed by another record processor")
        self.store.intents[shard_id] = batch.range
        self._written = 0
        for page in archive_pages(batch):
            self.store.pages[(page.pk, page.sk)] = page.data
        results = {key: self._apply(key, update, batch.range) for key, update in first_phase(batch).items()}
        results |= {key: self._apply(key, u, batch.range) for key, u in second_phase(batch, results).items()}
        self.writes.append(batch.range)
        return results

    def _apply(self, key: ItemKey, update: ItemUpdate, flush_range: FlushRange) -> ItemResult:
        if self.fail_after_items is not None and self._written >= self.fail_after_items:
            raise SinkUnavailable(f"injected fault after {self._written} item updates")
        self._written += 1
        item = self.store.items.setdefault(key, {})
        mark = watermark(flush_range.shard_id)
        if item.get(mark, "") >= flush_range.end:
            return ItemResult(False, dict(item))  # a replay: DynamoDB returns the whole item then
        item[mark] = flush_range.end
        for name, amount in update.adds.items():
            item[name] = item.get(name, 0) + amount
        item.update(update.sets)
        if update.active:
            item.setdefault(ACTIVE_SINCE, flush_range.marker)
        for name, members in update.members.items():
            if len(item.get(name, ())) < MEMBER_CAP:
                item[name] = item.get(name, set()) | set(sorted(members)[:MEMBER_CAP])
        if update.first_seen and update.last_seen:
            first, last = format_timestamp(update.first_seen), format_timestamp(update.last_seen)
            item[FIRST_SEEN] = min(item.get(FIRST_SEEN, first), first)
            item[LAST_SEEN] = max(item.get(LAST_SEEN, last), last)
        return ItemResult(True, dict(item))
