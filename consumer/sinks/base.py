"""The one interface every counter store implements; the record processor only sees this."""

from __future__ import annotations

from typing import Protocol

from consumer.core.aggregate import ItemKey
from consumer.core.flush import Batch, FlushRange, ItemResult


class CounterSink(Protocol):
    def claim(self, shard_id: str) -> FlushRange | None:
        """Take over the shard's flushes; return the last range recorded (fully applied, or half).

        From now on an earlier claimant of the shard (a processor whose lease was taken while it
        was still writing) can no longer record a range: its `write` raises `Superseded`.
        """
        ...

    def claim_origin(self, origin: str, record: str, expires_at: int) -> bool:
        """Whether `record` (shard and position) is the one copy of a re-driven `origin` that counts.

        The first record to ask owns the origin for good (until `expires_at`); asking again for
        the same record (a replay) answers True again, for any other copy False.
        """
        ...

    def write(self, batch: Batch) -> dict[ItemKey, ItemResult]:
        """Record the batch's range, then write its items and pages idempotently.

        Returns only when every item is durably written, with what each write returned (`ItemResult`:
        applied now or found applied, and the item's new or current values); raises
        `SinkUnavailable` otherwise, and `Superseded`, before touching any counter, once another
        processor has claimed the shard.
        """
        ...
