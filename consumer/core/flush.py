"""Cutting one shard's records into flush ranges that a replay can rebuild exactly.

A flush covers a range `(start, end]` of one shard; after a restart, ranges are cut at the last
recorded intent. Why that makes replays exact is explained in consumer/EXACTLY_ONCE.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.core.access_logs import ResponseEvent
from consumer.core.aggregate import Aggregate, ItemKey, ItemUpdate
from consumer.core.archive import pack
from consumer.core.batch import Member
from consumer.core.events import UsageEvent
from consumer.core.routes import Routes
from contract.table import ACTIVE_SINCE, ACTIVE_USERS, ARCHIVE_RETENTION, GLOBAL, archive_pk, archive_sk

_SUB_WIDTH = 20


@dataclass(frozen=True, slots=True)
class Position:
    """A record's place in its shard: sequence number plus KPL sub-sequence number."""

    sequence: str
    sub_sequence: int = 0

    def key(self) -> str:
        """A string whose lexical order is the shard order (length-prefixed, zero-padded)."""
        return position_key(self.sequence, self.sub_sequence)

    @classmethod
    def from_key(cls, key: str) -> Position:
        length = int(key[:3])
        sequence, sub = key[3 : 3 + length], key[4 + length :]
        if not sequence.isdigit() or not sub.isdigit() or key[3 + length] != ".":
            raise ValueError(f"not a position key: {key!r}")
        return cls(sequence, int(sub))


def position_key(sequence: str, sub_sequence: int = 0) -> str:
    """A record's place as a string whose lexical order is the shard's order (`Position.key`)."""
    return f"{len(sequence):03d}{sequence}.{sub_sequence:0{_SUB_WIDTH}d}"


@dataclass(frozen=True, slots=True)
class FlushRange:
    shard_id: str
    start: str | None  # exclusive position key; None when the shard has no checkpoint yet
    end: str  # inclusive position key

    @property
    def end_position(self) -> Position:
        return Position.from_key(self.end)

    @property
    def marker(self) -> str:
        """What an item created by this range records (`ACTIVE_SINCE`): the same in every replay."""
        return f"{self.shard_id}/{self.end}"


@dataclass(slots=True)
class Batch:
    range: FlushRange
    aggregate: Aggregate
    records: int


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item after a flush wrote it: `applied` by this flush, or found written already (a replay);
    `values` are the whole item the write returned (counters as ints), new or current."""

    applied: bool
    values: dict[str, Any]


def second_phase(batch: Batch, first: dict[ItemKey, ItemResult]) -> dict[ItemKey, ItemUpdate]:
    """The GLOBAL items' updates, each with the active users this range's user items created.

    A user's hour, day or month item records the range that created it (`ACTIVE_SINCE`); phase one
    returned it, new or current, so a replay of the range computes the very same numbers.
    """
    created: dict[str, int] = {}
    for (pk, sk), update in batch.aggregate.items.items():
        result = first.get((pk, sk))
        if update.active and result is not None and result.values.get(ACTIVE_SINCE) == batch.range.marker:
            created[sk] = created.get(sk, 0) + 1
    updates = {}
    for (pk, sk), update in batch.aggregate.items.items():
        if pk == GLOBAL:
            adds = update.adds | ({ACTIVE_USERS: created[sk]} if sk in created else {})
            updates[(pk, sk)] = replace(update, adds=adds)  # a copy: a retry recomputes it whole
    return updates


@dataclass(frozen=True, slots=True)
class Page:
    pk: str
    sk: str
    data: bytes
    expires_at: int


def archive_pages(batch: Batch) -> list[Page]:
    """The batch's archive pages; a replay of its range writes the very same ones (same keys)."""
    pages = []
    for (caller, epoch_hour), events in batch.aggregate.pages.items():
        hour = datetime.fromtimestamp(epoch_hour * 3600, UTC)
        expires_at = int((hour + ARCHIVE_RETENTION + timedelta(hours=1)).timestamp())
        for part, data in enumerate(pack(events)):
            sk = archive_sk(hour, batch.range.shard_id, batch.range.end, part)
            pages.append(Page(archive_pk(caller), sk, data, expires_at))
    return pages


def first_phase(batch: Batch) -> dict[ItemKey, ItemUpdate]:
    """Every item but the GLOBAL ones, which wait for the active users (`second_phase`)."""
    return {key: update for key, update in batch.aggregate.items.items() if key[0] != GLOBAL}


# A batch is also sealed, at a record boundary, once it holds this many callers (archive pages: a
# user's or an address's hour) or this many bytes of events: a flush's memory grows ~21 KiB per
# caller and with the events it archives (bench/memory.py), so a window with 100k callers (2.3 GB),
# or a catch-up after an outage, would otherwise hold them all at once. Both sit above what 10,000
# events/s from 1,000 users put in one shard's 10 s window (~750 callers, ~20 MB): no added writes.
MAX_FLUSH_CALLERS = 2_000
MAX_FLUSH_BYTES = 32 * 2**20


@dataclass(slots=True)
class ShardAccumulator:
    """Collects a shard's records and seals them into batches at the right boundaries."""

    shard_id: str
    start: str | None
    cut_points: list[str] = field(default_factory=list)
    routes: Routes = field(default_factory=Routes)
    max_callers: int = MAX_FLUSH_CALLERS
    max_bytes: int = MAX_FLUSH_BYTES
    _current: Aggregate = field(init=False)
    _records: int = 0
    _bytes: int = 0  # of the events the current batch keeps for the archive
    _last: str | None = None
    _sealed: list[Batch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._current = Aggregate(self.routes)

    @classmethod
    def resume(
        cls,
        shard_id: str,
        checkpoint: str | None,
        unfinished: FlushRange | None,
        routes: Routes | None = None,
    ) -> ShardAccumulator:
        """Start after `checkpoint`; if a flush past it may be half-applied, replay its exact range."""
        cuts: list[str] = []
        if unfinished is not None and unfinished.shard_id == shard_id:
            bounds = [b for b in (unfinished.start, unfinished.end) if b is not None]
            cuts = sorted(b for b in bounds if checkpoint is None or b > checkpoint)
        return cls(shard_id=shard_id, start=checkpoint, cut_points=cuts, routes=routes or Routes())

    @property
    def pending_records(self) -> int:
        return self._records

    @property
    def replaying(self) -> bool:
        return bool(self.cut_points)

    def is_new(self, key: str) -> bool:
        """False for a record at or below the last position taken (or the checkpoint): a redelivery.

        Sequence numbers only grow within a shard, so such a record was counted already; taking it
        again would count it twice, whatever the watermarks say (it lands in a later range).
        """
        last = self._last if self._last is not None else self.start
        return last is None or key > last

    def add(
        self,
        key: str,
        event: UsageEvent | None = None,
        data: bytes = b"",
        responses: Sequence[ResponseEvent] = (),
        events: Iterable[Member] = (),
    ) -> None:
        """Add one record at its position key: its usage `event` (and `data`, the record as sent, for
        the archive), the `events` of a usage batch (`decode_batch`'s), or the `responses`
        of its access logs; a record with nothing to count still advances.

        A record is added whole at its one position, so a replay cuts at the same record boundaries
        and re-applies each batch with all of its events."""
        if not self.is_new(key):
            raise ValueError(f"{key} is not after the last record taken: check `is_new` first")
        while self.cut_points and key > self.cut_points[0]:
            self._seal_at_cut()
        if event is not None:
            self._current.add(event, data)
            self._bytes += len(data)
        for _, member, member_data in events:
            self._current.add(member, member_data)
            self._bytes += len(member_data)
        for response in responses:
            self._current.add_response(response)
        self._records += 1
        self._last = key
        if self.cut_points and key == self.cut_points[0]:
            self._seal_at_cut()
        elif not self.cut_points and self._full():
            self._seal()  # never while replaying: a replayed range is re-applied whole (see `seal`)

    def seal(self) -> None:
        """Close the current batch (flush due, or shutting down); does nothing while replaying.

        A replay must re-apply the half-applied range whole. Flushing a part of it would record
        that part as the shard's intent and checkpoint it, and the range's true end, the only
        thing that keeps the next replay from straddling the watermarks it left, would be lost.
        """
        if self._records and not self.cut_points:
            self._seal()

    def caught_up(self) -> None:
        """Every record of the shard up to its tip (an empty poll at the tip) or its end was added.

        A cut still ahead then lies beyond any record of this shard: the intent was written for
        another incarnation of the stream (deleted and recreated under the same name). Dropping it
        lets the shard flush again instead of waiting forever for a record that will never come.
        """
        self.cut_points.clear()

    def take_sealed(self) -> list[Batch]:
        sealed, self._sealed = self._sealed, []
        return sealed

    def _seal_at_cut(self) -> None:
        self.cut_points.pop(0)
        if self._records:
            self._seal()

    def _seal(self) -> None:
        assert self._last is not None
        batch_range = FlushRange(self.shard_id, self.start, self._last)
        self._sealed.append(Batch(batch_range, self._current, self._records))
        self.start, self._current, self._records = self._last, Aggregate(self.routes), 0
        self._bytes = 0

    def _full(self) -> bool:
        return len(self._current.pages) >= self.max_callers or self._bytes >= self.max_bytes
