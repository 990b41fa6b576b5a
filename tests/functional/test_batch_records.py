"""Usage batches (contract.batch) through the real `KCLProcess` and record processor: each event of a
batch counts once, whatever crashes and replays, a bad event is dead-lettered alone with its index,
a batch that cannot be opened whole, and version-1 records beside them still count."""

from __future__ import annotations

import base64
import contextlib
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import structlog
from amazon_kclpy.messages import Record
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.archive import unpack
from consumer.core.events import InvalidEvent, Reason
from consumer.processor import LoggedDeadLetters, UsageRecordProcessor
from consumer.sinks.dead_letters import DeadLetter, dead_letter
from consumer.sinks.memory import MemorySink, MemoryStore
from consumer.testing import FakeClock, RecordingDeadLetters, ScriptedDaemon, chunks, event, kcl_record
from contract.batch import BATCH_PREFIX, encode_batch
from metering.commands import dlq
from tests.records import record_events

SHARD = "shardId-000000000000"
NOW = datetime(2026, 11, 25, tzinfo=UTC)
USERS = ["a@x.io", "b@x.io", "c@x.io", None]


def _processor(
    sink: MemorySink, dead_letters: Any = None, clock: FakeClock | None = None
) -> UsageRecordProcessor:
    log = structlog.get_logger("test")
    return UsageRecordProcessor(
        sink,
        dead_letters or LoggedDeadLetters(log),
        log,
        flush_interval=0.0 if clock else 5.0,
        monotonic=clock or FakeClock(),
        now=lambda: NOW,
    )


def _batch(*events: dict[str, Any]) -> bytes:
    return encode_batch([orjson.dumps(e) for e in events])


def _counts(sink: MemorySink) -> dict[tuple[str, str], dict[str, int]]:
    return {
        key: {name: value for name, value in item.items() if isinstance(value, int) and name != "expiresAt"}
        for key, item in sink.items.items()
    }


def _run(records: list[tuple[int, bytes]], sink: MemorySink | None = None) -> MemorySink:
    sink = sink or MemorySink()
    ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested().run(_processor(sink))
    return sink


def test_a_batch_counts_each_event_and_dead_letters_its_bad_events_alone() -> None:
    sink, dead_letters = MemorySink(), RecordingDeadLetters()
    future = (NOW + timedelta(hours=1)).isoformat()
    records = [
        (
            1,
            _batch(
                event(email="a@x.io"),
                event(eventType="API_BOGUS"),
                event(email="b@x.io"),
                event(timestamp=future),
            ),
        ),
        (2, orjson.dumps(event(email="a@x.io"))),  # version 1 still counts
        (3, BATCH_PREFIX + zlib.compress(b"[" + b" " * (1 << 20) + b"]")),  # inflates past the bound
        (4, BATCH_PREFIX + b"garbage"),
        (5, _batch(event(email="c@x.io", eventType="API_RATE_LIMITED", reason="RATE_LIMITED"))),
    ]
    daemon = ScriptedDaemon().initialize(SHARD).records(records).shutdown_requested()
    daemon.run(_processor(sink, dead_letters))
    assert sink.items[("USER#a@x.io", "TOTAL")]["calls"] == 2
    assert sink.items[("USER#b@x.io", "TOTAL")]["calls"] == 1
    assert sink.items[("USER#c@x.io", "TOTAL")]["rateLimited"] == 1
    assert [(sequence, index, error.reason.value) for sequence, index, error in dead_letters.sent] == [
        ("1", 1, "UNKNOWN_EVENT_TYPE"),
        ("1", 3, "FUTURE_TIMESTAMP"),
        ("3", None, "DECOMPRESSION_LIMIT"),
        ("4", None, "BATCH_INVALID"),
    ]
    assert daemon.checkpoints == [("5", 0)]


def test_the_archive_keeps_each_event_of_a_batch_as_sent() -> None:
    sent = [event(email="a@x.io", path=f"/items/{i}") for i in range(5)]
    sink = _run([(1, _batch(*sent))])
    (page,) = [data for (pk, _), data in sink.store.pages.items() if pk == "ARCHIVE#USER#a@x.io"]
    assert unpack(page) == sent


def test_a_batch_counts_as_its_events_would_one_record_each() -> None:
    events = [event(email=USERS[i % 4], ip=f"192.0.2.{i % 3}") for i in range(40)]
    singles = _run([(i + 1, orjson.dumps(e)) for i, e in enumerate(events)])
    batches = _run([(i // 7 + 1, _batch(*events[i : i + 7])) for i in range(0, 40, 7)])
    assert _counts(batches) == _counts(singles)


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.sampled_from(USERS), min_size=1, max_size=60),
    per_record=st.lists(st.integers(1, 6), min_size=1, max_size=6),
    polls=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    crash_after_items=st.integers(0, 12),
    replay_polls=st.lists(st.integers(1, 4), min_size=1, max_size=6),
)
def test_a_crash_mid_flush_then_a_replay_counts_each_event_of_each_batch_once(
    users: list[str | None],
    per_record: list[int],
    polls: list[int],
    crash_after_items: int,
    replay_polls: list[int],
) -> None:
    """A batch is added whole at its one position: a replay cuts at the same record boundaries and
    re-applies each batch with all of its events, wherever the flush died."""
    events = [event(email=u) for u in users]
    records = [(i + 1, _batch(*chunk)) for i, chunk in enumerate(chunks(events, per_record))]
    truth = _run([(i + 1, orjson.dumps(e)) for i, e in enumerate(events)])
    sink, clock = MemorySink(fail_after_items=crash_after_items), FakeClock()
    daemon = ScriptedDaemon().initialize(SHARD)
    for chunk in chunks(records, polls):
        daemon.records(chunk)
    with contextlib.suppress(SystemExit):  # died mid-flush: the daemon restarts the child
        daemon.run(_processor(sink, clock=clock))
    sink.fail_after_items = None
    checkpoint = daemon.last_checkpoint or "TRIM_HORIZON"
    replay = [r for r in records if checkpoint == "TRIM_HORIZON" or r[0] > int(checkpoint)]
    daemon = ScriptedDaemon().initialize(SHARD, checkpoint)
    for chunk in chunks(replay, replay_polls):
        daemon.records(chunk)
    daemon.shutdown_requested().run(_processor(sink, clock=clock))
    assert _counts(sink) == _counts(truth)


def test_a_redriven_event_inside_a_batch_counts_once_whatever_its_copies() -> None:
    """An event of a batch carrying `redriveOrigin` claims it for its own place (record and index):
    a replay of that batch counts it again, a copy elsewhere never."""
    store = MemoryStore()
    origin = "shardId-000000000009/77/0/3"
    redriven = event(email="bob@example.com", redriveOrigin=origin)
    batch = _batch(event(email="ann@example.com"), redriven)

    def run(shard: str, records: list[tuple[int, bytes]], checkpoint: str = "TRIM_HORIZON") -> None:
        daemon = ScriptedDaemon().initialize(shard, checkpoint).records(records).shutdown_requested()
        daemon.run(_processor(MemorySink(store)))

    run(SHARD, [(1, batch)])
    store.intents.clear()  # as if the flush was lost: the replay applies the range again (watermarks)
    run(SHARD, [(1, batch)])
    run("shardId-000000000001", [(4, orjson.dumps(redriven)), (5, _batch(redriven))])
    assert store.origins == {origin: f"{SHARD}/{'001'}1.{'0' * 20}/1"}
    assert store.items[("USER#bob@example.com", "TOTAL")]["calls"] == 1
    assert store.items[("USER#ann@example.com", "TOTAL")]["calls"] == 1


# -- dead letters and re-drives of batches ----------------------------------------------------------


def _letter(data: bytes, error: InvalidEvent, part: tuple[int, bytes] | None = None) -> DeadLetter:
    record = Record(kcl_record(7, data) | {"partitionKey": "pk"})
    return dead_letter(SHARD, record, error, stream="usage", application="app", log_event=part)


def test_a_bad_event_of_a_batch_is_dead_lettered_alone_with_its_index() -> None:
    bad = orjson.dumps(event(eventType="API_BOGUS"))
    letter = _letter(_batch(event(), event()), InvalidEvent(Reason.UNKNOWN_EVENT_TYPE, "x"), (1, bad))
    document = orjson.loads(letter.to_message())
    assert (document["batchEvent"], "logEvent" in document, base64.b64decode(document["data"])) == (
        1,
        False,
        bad,
    )
    assert DeadLetter.from_message(letter.to_message()) == letter
    assert letter.record_id == (SHARD, "7", 0, 1)


def test_a_redriven_event_of_a_batch_goes_back_alone_with_its_own_origin() -> None:
    """It goes back as a version-1 record: its origin names the batch's place and its index there."""
    member = orjson.dumps(event(at=NOW - timedelta(hours=1)))
    letter = _letter(_batch(event(), event()), InvalidEvent(Reason.DECODER_ERROR, "x"), (1, member))
    back = dlq.redriven_data(letter, NOW)
    assert orjson.loads(back) == orjson.loads(member) | {"redriveOrigin": f"{SHARD}/7/0/1"}


def test_a_batch_dead_lettered_whole_goes_back_as_a_batch_each_event_with_its_origin() -> None:
    """Say a consumer without version 2 dead-lettered it: once fixed, the batch goes back whole, and
    each event counts once however many times the re-drive puts it back (its own origin)."""
    sent = [event(email=f"u{i}@x.io", at=NOW - timedelta(hours=1)) for i in range(3)]
    letter = _letter(_batch(*sent), InvalidEvent(Reason.NOT_JSON, "x"))
    back = dlq.redriven_data(letter, NOW)
    assert record_events(back) == [e | {"redriveOrigin": f"{SHARD}/7/0/{i}"} for i, e in enumerate(sent)]
    store = MemoryStore()
    for sequence, shard in [(1, SHARD), (2, "shardId-000000000001")]:  # put back twice (a crash)
        daemon = ScriptedDaemon().initialize(shard).records([(sequence, back)]).shutdown_requested()
        daemon.run(_processor(MemorySink(store)))
    assert [store.items[(f"USER#u{i}@x.io", "TOTAL")]["calls"] for i in range(3)] == [1, 1, 1]


def test_a_batch_with_an_event_still_bad_stays_in_the_queue() -> None:
    letter = _letter(_batch(event(at=NOW), event(eventType="API_BOGUS")), InvalidEvent(Reason.NOT_JSON, "x"))
    with pytest.raises(dlq.StillBad) as still_bad:
        dlq.redriven_data(letter, NOW)
    assert still_bad.value.reason == "UNKNOWN_EVENT_TYPE" and still_bad.value.detail.startswith("event 1:")
