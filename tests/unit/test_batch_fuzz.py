"""Usage batches (contract.batch): decoding is total, each event is judged as a version-1 record would
be, the fast path agrees with the slow one, and a decompression bomb is never expanded.

A batch that made the decoder raise anything but `InvalidEvent` would stop its shard for good
(every restart replays it), so this is fuzzed with arbitrary bytes, arbitrary zlib streams, and
arrays of every JSON type in every field of every event.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consumer.core.aggregate import Aggregate
from consumer.core.batch import BatchRecord, decode_batch
from consumer.core.events import InvalidEvent, Reason, decode_event
from consumer.testing import event
from contract.batch import BATCH_PREFIX, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, encode_batch
from contract.events import MAX_EVENT_BYTES
from tests.unit.test_decoder_fuzz import FIELDS, json_values, timestamps

NOW = datetime(2026, 11, 24, 18, tzinfo=UTC)


def _zipped(document: bytes) -> bytes:
    return BATCH_PREFIX + zlib.compress(document)


def _one_by_one(data: bytes) -> tuple[list[tuple[int, Any]], list[tuple[int, Reason]]] | Reason:
    """What each event of a batch should give, judged alone as a version-1 record (the reference)."""
    try:
        members = json.loads(zlib.decompress(data[1:]))
    except (zlib.error, ValueError, RecursionError):
        return Reason.BATCH_INVALID
    good, bad = [], []
    for index, member in enumerate(members):
        raw = json.dumps(member).encode()
        try:
            good.append((index, decode_event(raw, NOW)))
        except InvalidEvent as invalid:
            bad.append((index, invalid.reason))
    return good, bad


def _total(data: bytes) -> BatchRecord | None:
    """Any bytes: a batch whose events aggregate, or InvalidEvent; nothing else escapes."""
    try:
        batch = decode_batch(data, NOW)
    except InvalidEvent as error:
        assert isinstance(error.reason, Reason)
        return None
    aggregate = Aggregate()
    for _, decoded, raw in batch.events:
        aggregate.add(decoded, raw)
    assert sorted(i for i, _, _ in batch.events + batch.rejected) == list(
        range(len(batch.events + batch.rejected))
    )
    return batch


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes(data: bytes) -> None:
    _total(data)
    _total(BATCH_PREFIX + data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_document_in_a_zlib_stream(value: Any) -> None:
    _total(_zipped(json.dumps(value).encode()))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
            timestamps,
            st.lists(st.sampled_from(FIELDS), max_size=2),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_each_event_is_judged_as_a_record_of_its_own(
    events: list[tuple[dict[str, Any], str, list[str]]],
) -> None:
    """Good and bad events mixed in every way: each counts, or fails alone with the reason it would
    have as a version-1 record; the fast path (all at once) and the slow one agree."""
    documents = []
    for replaced, timestamp, dropped in events:
        document = event() | {"timestamp": timestamp} | replaced
        for name in dropped:
            document.pop(name, None)
        documents.append(document)
    try:
        data = _zipped(json.dumps(documents, allow_nan=False).encode())
    except ValueError:  # NaN and infinities are not JSON: a batch of them cannot be opened (above)
        assume(False)
    batch = _total(data)
    expected = _one_by_one(data)
    assert batch is not None and not isinstance(expected, Reason)
    assert [(i, e) for i, e, _ in batch.events] == expected[0]
    assert [(i, error.reason) for i, error, _ in batch.rejected] == expected[1]


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_nesting(depth: int) -> None:
    _total(_zipped(b"[" * depth + b"]" * depth))
    _total(_zipped(b"[" + b'{"a":' * depth + b"1" + b"}" * depth + b"]"))
    good = orjson.dumps(event())
    batch = _total(_zipped(b"[" + good + b"," + b"[" * 2000 + b"]" * 2000 + b"]"))
    assert batch is None or [i for i, _, _ in batch.events] == [0]


def test_events_as_sent_and_in_order() -> None:
    sent = [orjson.dumps(event(email=f"u{i}@example.com")) for i in range(30)]
    batch = decode_batch(encode_batch(sent), NOW)
    assert [raw for _, _, raw in batch.events] == sent and batch.rejected == []
    assert [e.user_email for _, e, _ in batch.events] == [f"u{i}@example.com" for i in range(30)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02not zlib", Reason.BATCH_INVALID),
        (_zipped(b"[]"), Reason.BATCH_INVALID),  # 1 to MAX_BATCH_EVENTS events
        (
            _zipped(b"[" + b",".join([orjson.dumps(event())] * (MAX_BATCH_EVENTS + 1)) + b"]"),
            Reason.BATCH_INVALID,
        ),
        (_zipped(orjson.dumps(event())), Reason.BATCH_INVALID),  # an object, not an array
        (_zipped(b"[1,2"), Reason.BATCH_INVALID),
        (_zipped(b"[1]")[:-3], Reason.BATCH_INVALID),  # truncated
        (_zipped(b"[1]") + b"more", Reason.BATCH_INVALID),
        (BATCH_PREFIX + zlib.compressobj(zdict=b"[{}]").compress(b"[1]") + b"", Reason.BATCH_INVALID),
        (_zipped(b"[" + b" " * MAX_BATCH_BYTES + b"1]"), Reason.DECOMPRESSION_LIMIT),
    ],
)
def test_a_batch_that_cannot_be_opened_fails_whole(data: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidEvent) as invalid:
        decode_batch(data, NOW)
    assert invalid.value.reason is reason


def test_a_decompression_bomb_is_refused_without_being_expanded() -> None:
    """1 GiB of zeros compresses to ~1 MiB: decoding it holds MAX_BATCH_BYTES for a moment (and zlib
    a copy of the input it did not read)."""
    compressor = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    bomb = BATCH_PREFIX + b"".join(compressor.compress(chunk) for _ in range(1024)) + compressor.flush()
    assert len(bomb) < 1.1 * 2**20
    tracemalloc.start()
    with pytest.raises(InvalidEvent) as invalid:
        decode_batch(bomb, NOW)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert invalid.value.reason is Reason.DECOMPRESSION_LIMIT
    assert peak < len(bomb) + 4 * MAX_BATCH_BYTES, peak  # not the 1 GiB


def test_an_oversized_event_fails_alone() -> None:
    big = orjson.dumps(event(userAgent="x" * MAX_EVENT_BYTES))
    batch = decode_batch(encode_batch([orjson.dumps(event()), big]), NOW)
    assert [i for i, _, _ in batch.events] == [0]
    assert [(i, e.reason) for i, e, _ in batch.rejected] == [(1, Reason.OVERSIZE)]


def test_encode_batch_refuses_what_a_consumer_would() -> None:
    for events in ([], [b"{}"] * (MAX_BATCH_EVENTS + 1), [b"x" * MAX_BATCH_BYTES]):
        with pytest.raises(ValueError):
            encode_batch(events)
