"""Properties of the pure flush-range logic that makes replays exact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.flush import FlushRange, Position, ShardAccumulator

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
