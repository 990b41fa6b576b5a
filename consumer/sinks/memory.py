"""An in-memory counter sink with the same idempotency rules as the DynamoDB one, for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consumer.core.aggregate import Counters, ItemKey, rfc3339
from consumer.core.flush import Batch, FlushRange


@dataclass
class MemorySink:
    items: dict[ItemKey, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, FlushRange] = field(default_factory=dict)
    writes: list[FlushRange] = field(default_factory=list)
    fail_after_items: int | None = None  # a fault point: raise mid-flush after this many items

    def claim(self, shard_id: str) -> FlushRange | None:
        return self.intents.get(shard_id)

    def write(self, batch: Batch) -> None:
        self.intents[batch.range.shard_id] = batch.range
        for written, (key, counters) in enumerate(batch.aggregate.items.items()):
            if self.fail_after_items is not None and written >= self.fail_after_items:
                raise RuntimeError("injected fault mid-flush")
            self._apply(key, counters, batch.range)
        self.writes.append(batch.range)

    def _apply(self, key: ItemKey, counters: Counters, flush_range: FlushRange) -> None:
        item = self.items.setdefault(key, {"calls": 0, "authFailures": 0, "rateLimited": 0})
        watermark = f"w_{flush_range.shard_id}"
        if item.get(watermark, "") >= flush_range.end:
            return
        item[watermark] = flush_range.end
        item["calls"] += counters.calls
        item["authFailures"] += counters.auth_failures
        item["rateLimited"] += counters.rate_limited
        if counters.first_seen and counters.last_seen:
            first, last = rfc3339(counters.first_seen), rfc3339(counters.last_seen)
            item["firstSeen"] = min(item.get("firstSeen", first), first)
            item["lastSeen"] = max(item.get("lastSeen", last), last)
        if counters.expires_at is not None:
            item["expiresAt"] = counters.expires_at
