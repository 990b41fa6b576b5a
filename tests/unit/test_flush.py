"""Properties of the pure flush-range logic that makes replays exact."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.events import UsageEvent, decode_event
from consumer.core.flush import FlushRange, Position, ShardAccumulator
from consumer.testing import event

sequences = st.integers(min_value=0, max_value=10**60)
positions = st.builds(Position, sequences.map(str), st.integers(0, 10**6))


@given(positions, positions)
def test_key_order_is_shard_order(a: Position, b: Position) -> None:
    """Position keys sort as (sequence number, sub-sequence) do, whatever their lengths."""
    assert (a.key() < b.key()) == ((int(a.sequence), a.sub_sequence) < (int(b.sequence), b.sub_sequence))


@given(positions)
def test_key_round_trips(position: Position) -> None:
    """A position key decodes back to its position."""
    assert Position.from_key(position.key()) == position


@given(
    gaps=st.lists(st.integers(1, 10**20), min_size=1, max_size=60),
    seal_after=st.sets(st.integers(0, 59)),
    cut_indexes=st.sets(st.integers(0, 59), max_size=2),
)
def test_batches_are_contiguous_and_never_straddle_a_cut(
    gaps: list[int], seal_after: set[int], cut_indexes: set[int]
) -> None:
    """Batches tile the records from the checkpoint on, and no batch spans a replay cut point."""
    sequence, keys = 7, []
    for gap in gaps:
        sequence += gap
        keys.append(Position(str(sequence)).key())
    checkpoint = Position("7").key()
    cuts = sorted(keys[i] for i in cut_indexes if i < len(keys))
    unfinished = FlushRange("s", cuts[0], cuts[-1]) if cuts else None
    accumulator = ShardAccumulator.resume("s", checkpoint, unfinished)
    for i, key in enumerate(keys):
        accumulator.add(key, None)
        if i in seal_after:
            accumulator.seal()
    accumulator.seal()
    batches = accumulator.take_sealed()

    assert sum(b.records for b in batches) == len(keys)
    starts = [checkpoint] + [b.range.end for b in batches[:-1]]
    assert [b.range.start for b in batches] == starts
    assert batches[-1].range.end == keys[-1]
    for batch in batches:
        assert not any((batch.range.start or "") < cut < batch.range.end for cut in cuts)


def test_a_finished_intent_is_not_replayed() -> None:
    """An intent at or below the checkpoint was fully applied: no cut points remain."""
    end = Position("500").key()
    accumulator = ShardAccumulator.resume("s", end, FlushRange("s", Position("100").key(), end))
    assert accumulator.cut_points == []


def test_an_intent_of_another_shard_is_ignored() -> None:
    """Intents are per shard: another shard's range never cuts this one."""
    unfinished = FlushRange("other", None, Position("500").key())
    assert ShardAccumulator.resume("s", None, unfinished).cut_points == []


def test_a_replay_is_not_flushed_in_parts() -> None:
    """While a half-applied range is replayed, a due flush waits for the range's end."""
    end = Position("9").key()
    accumulator = ShardAccumulator.resume("s", None, FlushRange("s", None, end))
    for sequence in ("3", "6"):
        accumulator.add(Position(sequence).key(), None)
        accumulator.seal()
    assert accumulator.take_sealed() == []
    accumulator.add(Position("9").key(), None)
    assert [b.range for b in accumulator.take_sealed()] == [FlushRange("s", None, end)]


def test_caught_up_drops_a_cut_no_record_will_reach() -> None:
    """At the shard's tip a cut still ahead belongs to another stream: flushing resumes."""
    accumulator = ShardAccumulator.resume("s", None, FlushRange("s", None, Position("10" * 30).key()))
    accumulator.add(Position("3").key(), None)
    accumulator.caught_up()
    accumulator.seal()
    assert [b.records for b in accumulator.take_sealed()] == [1]


def _event_of(user: int) -> tuple[UsageEvent, bytes]:
    data = orjson.dumps(event(email=f"user{user}@example.com"))
    return decode_event(data, datetime(2026, 11, 25, tzinfo=UTC)), data


def test_a_batch_is_sealed_at_a_record_boundary_once_it_holds_enough_callers() -> None:
    """A window with more callers than the bound flushes in batches of at most that many (memory)."""
    accumulator = ShardAccumulator("s", None, max_callers=2)
    for sequence, user in enumerate((1, 1, 2, 3, 4, 5), start=1):
        accumulator.add(Position(str(sequence)).key(), *_event_of(user))
    accumulator.seal()
    batches = accumulator.take_sealed()
    assert [b.records for b in batches] == [3, 2, 1]
    assert [len(b.aggregate.pages) for b in batches] == [2, 2, 1]
    assert [b.range.start for b in batches] == [None, batches[0].range.end, batches[1].range.end]


def test_a_batch_is_sealed_once_it_keeps_enough_bytes_for_the_archive() -> None:
    """One busy caller cannot pile up events without bound either."""
    event_bytes = len(_event_of(1)[1])
    accumulator = ShardAccumulator("s", None, max_bytes=3 * event_bytes)
    for sequence in range(1, 8):
        accumulator.add(Position(str(sequence)).key(), *_event_of(1))
    assert [b.records for b in accumulator.take_sealed()] == [3, 3]
    assert accumulator.pending_records == 1


def test_a_replay_is_not_sealed_by_size_either() -> None:
    """A half-applied range is re-applied whole, however many callers it holds."""
    end = Position("9").key()
    accumulator = ShardAccumulator.resume("s", None, FlushRange("s", None, end))
    accumulator.max_callers = 1
    for sequence, user in ((3, 1), (6, 2), (9, 3)):
        accumulator.add(Position(str(sequence)).key(), *_event_of(user))
    assert [(b.records, b.range) for b in accumulator.take_sealed()] == [(3, FlushRange("s", None, end))]
