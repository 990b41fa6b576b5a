"""The one interface every counter store implements; the record processor only sees this."""

from __future__ import annotations

from typing import Protocol

from consumer.core.flush import Batch, FlushRange


class CounterSink(Protocol):
    def unfinished(self, shard_id: str) -> FlushRange | None:
        """The last flush range recorded for the shard (it may be fully applied, or half)."""
        ...

    def write(self, batch: Batch) -> None:
        """Record the batch's range, then apply its counters idempotently.

        Returns only when every item is durably written; raises `SinkUnavailable` otherwise.
        """
        ...
