"""Cutting one shard's records into flush ranges that a replay can rebuild exactly.

A flush covers a range `(start, end]` of one shard; after a restart, ranges are cut at the last
recorded intent. Why that makes replays exact is explained in consumer/EXACTLY_ONCE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.core.aggregate import Aggregate
from consumer.core.events import UsageEvent

_SUB_WIDTH = 20


@dataclass(frozen=True, slots=True)
class Position:
    """A record's place in its shard: sequence number plus KPL sub-sequence number."""

    sequence: str
    sub_sequence: int = 0

    def key(self) -> str:
        """A string whose lexical order is the shard order (length-prefixed, zero-padded)."""
        return f"{len(self.sequence):03d}{self.sequence}.{self.sub_sequence:0{_SUB_WIDTH}d}"

    @classmethod
    def from_key(cls, key: str) -> Position:
        length = int(key[:3])
        sequence, sub = key[3 : 3 + length], key[4 + length :]
        if not sequence.isdigit() or not sub.isdigit() or key[3 + length] != ".":
            raise ValueError(f"not a position key: {key!r}")
        return cls(sequence, int(sub))


@dataclass(frozen=True, slots=True)
class FlushRange:
    shard_id: str
    start: str | None  # exclusive position key; None when the shard has no checkpoint yet
    end: str  # inclusive position key

    @property
    def end_position(self) -> Position:
        return Position.from_key(self.end)


@dataclass(slots=True)
class Batch:
    range: FlushRange
    aggregate: Aggregate
    records: int


@dataclass(slots=True)
class ShardAccumulator:
    """Collects a shard's records and seals them into batches at the right boundaries."""

    shard_id: str
    start: str | None
    cut_points: list[str] = field(default_factory=list)
    _current: Aggregate = field(default_factory=Aggregate)
    _records: int = 0
    _last: str | None = None
    _sealed: list[Batch] = field(default_factory=list)

    @classmethod
    def resume(cls, shard_id: str, checkpoint: str | None, unfinished: FlushRange | None) -> ShardAccumulator:
        """Start after `checkpoint`; if a flush past it may be half-applied, replay its exact range."""
        cuts: list[str] = []
        if unfinished is not None and unfinished.shard_id == shard_id:
            bounds = [b for b in (unfinished.start, unfinished.end) if b is not None]
            cuts = sorted(b for b in bounds if checkpoint is None or b > checkpoint)
        return cls(shard_id=shard_id, start=checkpoint, cut_points=cuts)

    @property
    def pending_records(self) -> int:
        return self._records

    @property
    def replaying(self) -> bool:
        return bool(self.cut_points)

    def is_new(self, position: Position) -> bool:
        """False for a record at or below the last position taken (or the checkpoint): a redelivery.

        Sequence numbers only grow within a shard, so such a record was counted already; taking it
        again would count it twice, whatever the watermarks say (it lands in a later range).
        """
        last = self._last if self._last is not None else self.start
        return last is None or position.key() > last

    def add(self, position: Position, event: UsageEvent | None) -> None:
        """Add one record; `event` is None for a record that cannot be counted (it still advances)."""
        if not self.is_new(position):
            raise ValueError(f"{position} is not after the last record taken: check `is_new` first")
        key = position.key()
        while self.cut_points and key > self.cut_points[0]:
            self._seal_at_cut()
        if event is not None:
            self._current.add(event)
        self._records += 1
        self._last = key
        if self.cut_points and key == self.cut_points[0]:
            self._seal_at_cut()

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
        self.start, self._current, self._records = self._last, Aggregate(), 0
