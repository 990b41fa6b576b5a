"""`consumer.kcl_protocol.KCLProcess` against amazon_kclpy's `KCLProcess`: the same lines in, the same
calls, values, replies and errors out.

Each case feeds both implementations the same protocol lines and the same checkpoint replies, with a
processor that records every call (the input's fields, each record's values) and the outcome of each
checkpoint it makes, then compares everything: the calls, every write to stdout (and its flushes),
the errors reported on stderr, and what `run()` raised. Last, the record processor's own functional
suite (tests/functional/test_record_processor.py) runs again with the new process substituted.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v2 import processor as v2processor
from amazon_kclpy.v3.processor import RecordProcessorBase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer import kcl_protocol
from consumer.core.events import Reason
from consumer.processor import UsageRecordProcessor
from consumer.sinks.memory import MemorySink
from consumer.testing import RecordingDeadLetters, ScriptedDaemon, event
from tests.functional import test_record_processor as record_processor_suite

IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "amazon_kclpy": kcl.KCLProcess,
    "kcl_protocol": kcl_protocol.KCLProcess,
}
SHARD = "shardId-000000000007"
ARRIVED = 1795564800000  # 2026-11-25T00:00:00Z


# -- the daemon's lines ------------------------------------------------------------------------------
def line(message: Any, *, jackson: bool = True) -> str:
    """One protocol line: compact as the daemon's Jackson writes it, or spaced as `json.dumps`."""
    separators = (",", ":") if jackson else (", ", ": ")
    return json.dumps(message, separators=separators) + "\n"


def record(
    data: bytes | str | None,
    sequence: str,
    sub_sequence: int = 0,
    partition_key: str = "pk",
    arrived: Any = ARRIVED,
    **extra: Any,
) -> dict[str, Any]:
    """A record as the daemon's JsonFriendlyRecord serialises it (field order included)."""
    encoded = data if isinstance(data, str) or data is None else base64.b64encode(data).decode()
    return {
        "data": encoded,
        "partitionKey": partition_key,
        "sequenceNumber": sequence,
        "approximateArrivalTimestamp": arrived,
        "subSequenceNumber": sub_sequence,
        "action": "record",
    } | extra


def initialize(sequence: str | None = "TRIM_HORIZON", sub_sequence: int | None = 0) -> str:
    return line(
        {
            "action": "initialize",
            "shardId": SHARD,
            "sequenceNumber": sequence,
            "subSequenceNumber": sub_sequence,
        }
    )


def process_records(records: list[dict[str, Any]], millis_behind: Any = 1000, **kwargs: Any) -> str:
    return line(
        {"action": "processRecords", "records": records, "millisBehindLatest": millis_behind}, **kwargs
    )


def bare(action: str) -> str:
    return line({"action": action})


def reply(sequence: Any = None, sub_sequence: Any = None, error: Any = None) -> str:
    return line(
        {
            "action": "checkpoint",
            "sequenceNumber": sequence,
            "subSequenceNumber": sub_sequence,
            "error": error,
        }
    )


# -- the daemon, and a processor that records everything -------------------------------------------
class Daemon:
    """Feeds lines; answers each checkpoint request with the next scripted reply (None: none at all,
    the process then reads whatever comes next), or with success when the script is exhausted."""

    def __init__(self, lines: Iterable[str], replies: Iterable[str | None] = ()) -> None:
        self.lines = deque(lines)
        self.replies = deque(replies)
        self.writes: list[str] = []
        self.flushes = 0
        self.stderr = io.StringIO()

    def readline(self) -> str:
        return self.lines.popleft() if self.lines else ""

    def write(self, text: str) -> None:
        self.writes.append(text)
        for part in text.split("\n"):
            if part.strip() and json.loads(part)["action"] == "checkpoint":
                answer = self.replies.popleft() if self.replies else reply(*_position(json.loads(part)))
                if answer is not None:
                    self.lines.appendleft(answer)

    def flush(self) -> None:
        self.flushes += 1


def _position(request: dict[str, Any]) -> tuple[Any, Any]:
    return request["sequenceNumber"], request["subSequenceNumber"]


# A plan: call number -> steps; a step is checkpoint arguments (a tuple), "last" (checkpoint at the
# batch's last record) or an exception to raise.
Plan = dict[int, list[Any]]


def _plain(value: Any) -> Any:
    """Comparable values: NaN equals itself once written as text."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _attempt(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def describe_record(r: Any) -> tuple[Any, ...]:
    return (
        _attempt(lambda: r.binary_data),
        r.data,
        r.sequence_number,
        r.sub_sequence_number,
        r.partition_key,
        r.timestamp_millis,
        _attempt(lambda: r.approximate_arrival_timestamp),
        tuple(
            r[name]
            for name in (
                "data",
                "partitionKey",
                "sequenceNumber",
                "approximateArrivalTimestamp",
                "subSequenceNumber",
            )
        ),
        r.get("action"),
    )


class Recording(RecordProcessorBase):  # type: ignore[misc]
    def __init__(self, plan: Plan | None = None) -> None:
        self.plan = plan or {}
        self.calls: list[Any] = []

    def initialize(self, initialize_input: Any) -> None:
        i = initialize_input
        self._called("initialize", (i.action, i.shard_id, i.sequence_number, i.sub_sequence_number), None)

    def process_records(self, process_records_input: Any) -> None:
        p = process_records_input
        records = [describe_record(r) for r in p.records]
        last = (p.records[-1].sequence_number, p.records[-1].sub_sequence_number) if p.records else None
        self._called(
            "process_records", (p.action, _plain(p.millis_behind_latest), records), p.checkpointer, last
        )

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._called("lease_lost", (lease_lost_input.action, hasattr(lease_lost_input, "checkpointer")), None)

    def shard_ended(self, shard_ended_input: Any) -> None:
        self._called("shard_ended", (shard_ended_input.action,), shard_ended_input.checkpointer)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        i = shutdown_requested_input
        self._called("shutdown_requested", (i.action,), i.checkpointer)

    def _called(self, method: str, fields: Any, checkpointer: Any, last: Any = None) -> None:
        outcomes: list[Any] = []
        self.calls.append((method, fields, checkpointer is not None, outcomes))
        for step in self.plan.get(len(self.calls) - 1, []):
            if isinstance(step, BaseException):
                raise step
            try:
                checkpointer.checkpoint(*(last if step == "last" else step))
                outcomes.append("ok")
            except CheckpointError as exc:
                outcomes.append(("CheckpointError", type(exc), exc.value))
            except Exception as exc:
                outcomes.append(("raised", type(exc), str(exc)))


@dataclass
class Run:
    calls: list[Any]
    writes: list[str]
    flushes: int
    errors: list[tuple[str, str]]  # (message, the traceback's last line) per error reported on stderr
    raised: Any
    unread: list[str]


def _errors(stderr: str) -> list[tuple[str, str]]:
    """Each reported error: amazon_kclpy's message, then the traceback's exception line (its frames
    differ between the implementations: they name different modules)."""
    marker = "Caught exception from action dispatch: "
    reported = []
    for chunk in stderr.split(marker)[1:]:
        message, _, trace = chunk.partition("Traceback (most recent call last):")
        reported.append((message, trace.strip().splitlines()[-1]))
    return reported


def run(
    implementation: str,
    lines: Iterable[str],
    replies: Iterable[str | None] = (),
    processor: Any = None,
) -> Run:
    daemon = Daemon(lines, replies)
    processor = processor if processor is not None else Recording()
    raised: Any = None
    try:
        IMPLEMENTATIONS[implementation](
            processor, input_file=daemon, output_file=daemon, error_file=daemon.stderr
        ).run()
    except BaseException as exc:  # SystemExit too: it must propagate the same way
        raised = (type(exc), str(exc))
    return Run(
        processor.calls,
        daemon.writes,
        daemon.flushes,
        _errors(daemon.stderr.getvalue()),
        raised,
        list(daemon.lines),
    )


def assert_same(
    lines: list[str], replies: list[str | None] | None = None, processor: Callable[[], Any] = Recording
) -> Run:
    stock = run("amazon_kclpy", lines, list(replies or []), processor())
    fast = run("kcl_protocol", lines, list(replies or []), processor())
    assert fast == stock
    return fast


def statuses(result: Run) -> list[str]:
    return [json.loads(w)["responseFor"] for w in result.writes if '"status"' in w]


# -- a whole lease, and checkpoint replies -----------------------------------------------------------
LEASE = [
    initialize(),
    process_records(
        [
            record(b'{"n": 1}', "49590338271490256608559692538361571095921575989136588898", 0, "user-a"),
            record(b'{"n": 2}', "49590338271490256608559692538361571095921575989136588898", 1, "user-a"),
            record(b'{"n": 3}', "49590338271490256608559692538361571095921575989136588898", 2, "user-b"),
            record(b"\x00\xff binary", "49590338271490256608559692540", 0, "k\u00e9y-\U0001f600"),
        ],
        millis_behind=86_400_000,
    ),
    process_records([], millis_behind=1000),  # an empty poll, still behind
    process_records([record(b"", "7", 0, "")], millis_behind=0),  # empty data
    process_records([], millis_behind=0),  # an empty poll at the tip
    process_records([record(b"x" * 5000, "8", 0)], millis_behind=None, jackson=False),
]


def test_a_lease_with_checkpoints_then_shutdown_requested() -> None:
    plan: Plan = {1: ["last"], 3: ["last", ("7", 0)], 6: [("8", 0), ()]}
    result = assert_same([*LEASE, bare("shutdownRequested")], processor=lambda: Recording(plan))
    assert statuses(result) == ["initialize", *["processRecords"] * 5, "shutdownRequested"]
    assert result.calls[1][3] == ["ok"] and result.calls[6][3] == ["ok", "ok"]
    assert result.calls[1][1][2][1][0] == b'{"n": 2}' and result.calls[1][1][2][1][3] == 1
    checkpoints = [json.loads(w) for w in result.writes if '"checkpoint"' in w]
    assert checkpoints[-1] == {"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None}


@pytest.mark.parametrize("ending", ["shardEnded", "shutdownRequested", "leaseLost"])
def test_each_ending(ending: str) -> None:
    plan: Plan = {6: [()]} if ending != "leaseLost" else {}
    result = assert_same([*LEASE, bare(ending)], processor=lambda: Recording(plan))
    assert statuses(result)[-1] == ending
    assert result.calls[-1][2] is (ending != "leaseLost")  # lease_lost gets no checkpointer


@pytest.mark.parametrize(
    "start",
    [
        ("TRIM_HORIZON", 0),
        ("LATEST", 0),
        ("49590338271490256608559692538361571095921575989136588898", 3),
        (None, None),
    ],
)
def test_initialize_positions(start: tuple[str | None, int | None]) -> None:
    result = assert_same([initialize(*start), bare("leaseLost")])
    assert result.calls[0][1] == ("initialize", SHARD, *start)


@pytest.mark.parametrize(
    "error",
    [
        "ShutdownException",
        "ThrottlingException",
        "InvalidStateException",
        "KinesisClientLibDependencyException",
    ],
)
def test_checkpoint_errors_surface_as_checkpoint_error_with_the_same_value(error: str) -> None:
    lines = [initialize(), process_records([record(b"{}", "5")]), bare("shardEnded")]
    plan: Plan = {1: ["last", "last"], 2: [()]}
    replies = [reply("5", 0, error), reply("5", 0), reply(None, None, error)]
    result = assert_same(lines, replies, lambda: Recording(plan))
    assert result.calls[1][3] == [("CheckpointError", CheckpointError, error), "ok"]
    assert result.calls[2][3] == [("CheckpointError", CheckpointError, error)]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(bare("leaseLost"), id="another-action"),
        pytest.param(process_records([record(b"{}", "9")]), id="records-instead"),
        pytest.param(reply("5", 0, 42), id="error-not-a-string"),
        pytest.param(reply("5", 0, ""), id="error-empty"),
        pytest.param(line({"action": "checkpoint", "sequenceNumber": "5"}), id="reply-missing-key"),
        pytest.param(
            line({"action": "checkpoint", "sequenceNumber": 5, "subSequenceNumber": 0}), id="int-sequence"
        ),
        pytest.param(
            line({"action": "checkpoint", "sequenceNumber": "5", "subSequenceNumber": 0, "x": 1}), id="extra"
        ),
        pytest.param(
            line({"action": "checkpoint", "sequenceNumber": "5", "subSequenceNumber": 0, "x": {}}), id="dict"
        ),
        pytest.param(line({"sequenceNumber": "5", "subSequenceNumber": 0}), id="no-action"),
        pytest.param(line({"action": "nonsense"}), id="unknown-action"),
        pytest.param("not json\n", id="not-json"),
        pytest.param("\n", id="blank"),
        pytest.param(None, id="end-of-input"),
    ],
)
def test_odd_checkpoint_replies(answer: str | None) -> None:
    """Whatever comes back instead of a clean reply raises exactly what amazon_kclpy raises."""
    assert_same(
        [initialize(), process_records([record(b"{}", "5")])], [answer], lambda: Recording({1: ["last"]})
    )


def test_processor_errors_are_reported_and_still_acknowledged() -> None:
    plan: Plan = {0: [ValueError("bad shard")], 1: [KeyError("k")], 2: [RuntimeError("x\ny")]}
    lines = [
        initialize(),
        process_records([record(b"{}", "5")]),
        bare("shutdownRequested"),
        bare("leaseLost"),
    ]
    result = assert_same(lines, processor=lambda: Recording(plan))
    assert statuses(result) == ["initialize", "processRecords", "shutdownRequested", "leaseLost"]
    assert [message for message, _ in result.errors] == ["bad shard", "'k'", "x\ny"]


def test_system_exit_propagates_without_a_status() -> None:
    lines = [initialize(), process_records([record(b"{}", "5")]), bare("shutdownRequested")]
    result = assert_same(lines, processor=lambda: Recording({1: [SystemExit(1)]}))
    assert result.raised == (SystemExit, "1") and statuses(result) == ["initialize"]
    assert result.unread == [bare("shutdownRequested")]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(line({"action": "bogus"}), id="unknown-action"),
        pytest.param(line({"shardId": SHARD}), id="no-action"),
        pytest.param("{not json\n", id="not-json"),
        pytest.param("\n", id="blank-line"),
        pytest.param("  \r\n", id="whitespace-line"),
        pytest.param("[1, 2]\n", id="array"),
        pytest.param("null\n", id="null"),
        pytest.param('"initialize"\n', id="string"),
        pytest.param(line(record(b"{}", "1")), id="record-at-top-level"),
        pytest.param(reply("1", 0), id="checkpoint-at-top-level"),
        pytest.param(line({"action": "shutdown", "reason": "TERMINATE"}), id="v1-shutdown"),
        pytest.param(line({"action": "initialize", "shardId": SHARD}), id="missing-field"),
        pytest.param(line({"action": "processRecords", "records": []}), id="no-millis"),
        pytest.param(
            line(
                {
                    "action": "initialize",
                    "shardId": SHARD,
                    "sequenceNumber": "1",
                    "subSequenceNumber": 0,
                    "extra": {"a": 1},
                }
            ),
            id="extra-object",
        ),
        pytest.param(
            line(
                {
                    "action": "initialize",
                    "shardId": SHARD,
                    "sequenceNumber": "1",
                    "subSequenceNumber": 0,
                    "extra": [1],
                }
            ),
            id="extra-scalar",
        ),
        pytest.param(
            line({"action": "initialize", "shardId": 7, "sequenceNumber": 1.5, "subSequenceNumber": "0"}),
            id="odd-types",
        ),
        pytest.param(line({"action": "leaseLost", "why": "stolen"}), id="extra-field"),
        pytest.param('{"action": "initialize", "action": "leaseLost"}\n', id="duplicate-action"),
        pytest.param('{"action": "leaseLost", "action": "initialize"}\n', id="duplicate-action-2"),
        pytest.param(initialize().replace(SHARD, "\\ud800"), id="lone-surrogate-escaped"),
        pytest.param(initialize().replace(SHARD, "\ud800"), id="lone-surrogate-raw"),
        pytest.param("\ufeff" + bare("leaseLost"), id="bom"),
        pytest.param(bare("leaseLost").rstrip("\n") + " x\n", id="trailing-garbage"),
        pytest.param(" \t" + bare("leaseLost").rstrip("\n") + " \r\n", id="padded"),
        pytest.param(initialize().replace('"TRIM_HORIZON"', '"TRIM\\u005fHORIZON"'), id="escaped"),
        pytest.param(initialize().replace('"subSequenceNumber":0', '"subSequenceNumber":1e0'), id="exponent"),
        pytest.param(
            initialize().replace('"subSequenceNumber":0', '"subSequenceNumber":-0'), id="minus-zero"
        ),
        pytest.param(initialize().replace('"subSequenceNumber":0', '"subSequenceNumber":NaN'), id="nan"),
        pytest.param(initialize().replace('"subSequenceNumber":0', '"subSequenceNumber":true'), id="bool"),
        pytest.param(
            initialize().replace('"subSequenceNumber":0', '"subSequenceNumber":' + "9" * 40), id="big"
        ),
    ],
)
def test_odd_lines_behave_as_in_amazon_kclpy(bad: str) -> None:
    """Unknown actions, malformed lines and odd values: the same calls, replies and exceptions."""
    assert_same([initialize(), bad, bare("leaseLost")])


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([record(b"{}", "1", arrived="1795564800000")], id="arrival-as-string"),
        pytest.param([record(b"{}", "1", arrived=1795564800000.7)], id="arrival-as-float"),
        pytest.param([record(b"{}", "1", arrived=10**20)], id="arrival-out-of-range"),
        pytest.param([record(b"{}", "1", arrived=-1)], id="arrival-negative"),
        pytest.param([record(b"{}", "1", arrived=253_402_300_799_999)], id="arrival-year-9999"),
        pytest.param(
            [{k: v for k, v in record(b"{}", "1").items() if k != "action"}], id="record-without-action"
        ),
        pytest.param([record(b"{}", "1", action="leaseLost")], id="record-with-another-action"),
        pytest.param([record(b"{}", "1", extra=1)], id="record-extra-field"),
        pytest.param([record(b"{}", "1", extra={"action": "leaseLost"})], id="record-nested-message"),
        pytest.param([record(b"{}", 1)], id="sequence-as-int"),
        pytest.param([record(b"{}", "1", None)], id="sub-sequence-null"),
        pytest.param([record(b"{}", "1", partition_key=None)], id="partition-key-null"),
        pytest.param([record("QQ", "1")], id="base64-unpadded"),
        pytest.param([record("QR==", "1")], id="base64-non-canonical"),
        pytest.param([record("Q Q=\n=", "1")], id="base64-with-junk"),
        pytest.param([record("-_8=", "1")], id="base64-urlsafe"),
        pytest.param([record("é", "1")], id="base64-non-ascii"),
        pytest.param([record(None, "1")], id="data-null"),
        pytest.param([record(b"{}", "1", partition_key="\ud800")], id="partition-key-lone-surrogate"),
    ],
)
def test_odd_records_behave_as_in_amazon_kclpy(records: list[dict[str, Any]]) -> None:
    assert_same(
        [initialize(), process_records(records), process_records([record(b"{}", "2")]), bare("leaseLost")]
    )


def test_a_record_without_an_arrival_time_is_delivered_where_amazon_kclpy_raises() -> None:
    """A null approximateArrivalTimestamp: stock kclpy ends `run()` decoding the line (the shard
    restarts on it forever); the new process delivers the record with its arrival None."""
    lines = [initialize(), process_records([record(b"{}", "1", arrived=None)]), bare("leaseLost")]
    stock = run("amazon_kclpy", lines)
    assert stock.raised is not None and stock.raised[0] is TypeError
    fast = run("kcl_protocol", lines)
    assert fast.raised is None and fast.errors == []
    [(data, _, sequence, _, _, millis, arrival, fields, _)] = fast.calls[1][1][2]
    assert (data, sequence, millis, arrival, fields[3]) == (b"{}", "1", None, None, None)
    assert statuses(fast) == ["initialize", "processRecords", "leaseLost"]


@pytest.mark.parametrize("millis_behind", [None, 0, 2**63 - 1, "12", float("nan"), 1.5])
def test_millis_behind_latest_values(millis_behind: Any) -> None:
    assert_same([initialize(), process_records([record(b"{}", "1")], millis_behind=millis_behind)])


class V2Recording(v2processor.RecordProcessorBase):  # type: ignore[misc]
    """An older-API processor: amazon_kclpy adapts it, and so must the new process."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def initialize(self, initialize_input: Any) -> None:
        self.calls.append(("initialize", initialize_input.shard_id))

    def process_records(self, process_records_input: Any) -> None:
        self.calls.append(("process_records", [describe_record(r) for r in process_records_input.records]))

    def shutdown(self, shutdown_input: Any) -> None:
        self.calls.append(("shutdown", shutdown_input.reason))
        if shutdown_input.reason == "TERMINATE":
            shutdown_input.checkpointer.checkpoint()


class V1Recording(kcl.RecordProcessorBase):  # type: ignore[misc]
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def initialize(self, shard_id: str) -> None:
        self.calls.append(("initialize", shard_id))

    def process_records(self, records: list[Any], checkpointer: Any) -> None:
        self.calls.append(("process_records", [(r["data"], r["sequenceNumber"]) for r in records]))
        checkpointer.checkpoint(records[-1]["sequenceNumber"])

    def shutdown(self, checkpointer: Any, reason: str) -> None:
        self.calls.append(("shutdown", reason))


@pytest.mark.parametrize("processor", [V1Recording, V2Recording])
@pytest.mark.parametrize("ending", ["shardEnded", "leaseLost"])
def test_older_processor_versions_are_adapted_the_same_way(processor: Callable[[], Any], ending: str) -> None:
    assert_same(
        [initialize(), process_records([record(b"{}", "1"), record(b"[]", "2")]), bare(ending)],
        None,
        processor,
    )


def test_the_daemons_ordinary_lines_never_take_the_stock_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines the daemon writes, and its checkpoint replies, are all decoded by msgspec."""

    def refuse(line: Any) -> Any:
        raise AssertionError(f"took the stock path: {line!r}")

    monkeypatch.setattr(kcl_protocol, "_stock_decode", refuse)
    inputs: list[Any] = []

    class Keep(Recording):
        def _called(self, method: str, fields: Any, checkpointer: Any, last: Any = None) -> None:
            inputs.append(checkpointer)
            super()._called(method, fields, checkpointer, last)

    plan: Plan = {1: ["last"], 3: ["last"], 6: [()]}
    replies = [reply("1", 0), reply("7", 0, "ThrottlingException"), reply(None, None)]
    result = run("kcl_protocol", [*LEASE, bare("shardEnded")], replies, Keep(plan))
    assert result.raised is None and result.errors == []
    assert result.calls[3][3] == [("CheckpointError", CheckpointError, "ThrottlingException")]
    assert isinstance(inputs[1], kcl_protocol.Checkpointer)


CHILD = """
import sys
from amazon_kclpy import kcl
from amazon_kclpy.v3.processor import RecordProcessorBase
from consumer import kcl_protocol

class Processor(RecordProcessorBase):
    def initialize(self, i):
        print("initialize", i.shard_id, file=sys.stderr)
    def process_records(self, p):
        data = [r.binary_data for r in p.records]
        print("records", data, p.millis_behind_latest, file=sys.stderr)
        if p.records:
            try:
                p.checkpointer.checkpoint(p.records[-1].sequence_number, p.records[-1].sub_sequence_number)
            except kcl.CheckpointError as exc:
                print("refused", exc.value, file=sys.stderr)
    def lease_lost(self, i):
        pass
    def shard_ended(self, i):
        i.checkpointer.checkpoint()
    def shutdown_requested(self, i):
        pass

implementation = kcl.KCLProcess if sys.argv[1] == "amazon_kclpy" else kcl_protocol.KCLProcess
implementation(Processor(), input_file=sys.stdin, output_file=sys.stdout, error_file=sys.stderr).run()
"""


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_child_process_over_real_pipes(implementation: str) -> None:
    """As the daemon runs the child: its stdin and stdout are pipes, stdout carries only protocol lines."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, implementation],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],  # the repository, where `consumer` is
    )
    assert child.stdin is not None and child.stdout is not None
    received: list[Any] = []
    errors = iter([None, "ThrottlingException", None, None])
    lines = [LEASE[0], LEASE[1], LEASE[3], process_records([record(b"{}", "9")], 0), bare("shardEnded")]
    for sent in lines:
        child.stdin.write(sent)
        child.stdin.flush()
        while True:
            answer = child.stdout.readline()
            assert answer, "the child stopped answering"
            if not answer.strip():
                continue  # the blank line amazon_kclpy writes before each message
            message = json.loads(answer)
            received.append(message)
            if message["action"] == "status":
                break
            child.stdin.write(reply(*_position(message), error=next(errors)))
            child.stdin.flush()
    _, stderr = child.communicate("", timeout=30)
    assert child.returncode == 0, stderr
    assert [m.get("responseFor") or (m["sequenceNumber"], m["subSequenceNumber"]) for m in received] == [
        "initialize",
        ("49590338271490256608559692540", 0),
        "processRecords",
        ("7", 0),
        "processRecords",
        ("9", 0),
        "processRecords",
        (None, None),
        "shardEnded",
    ]
    assert stderr.splitlines() == [
        f"initialize {SHARD}",
        "records [b'{\"n\": 1}', b'{\"n\": 2}', b'{\"n\": 3}', b'\\x00\\xff binary'] 86400000",
        "records [b''] 0",
        "refused ThrottlingException",
        "records [b'{}'] 0",
    ]


# -- generated batches -------------------------------------------------------------------------------
_records = st.lists(
    st.builds(
        record,
        data=st.binary(max_size=200),
        sequence=st.from_regex(r"[0-9]{1,64}", fullmatch=True),
        sub_sequence=st.integers(0, 2**63 - 1),
        partition_key=st.text(max_size=12),  # surrogates too: JSON escapes them, msgspec refuses them
        arrived=st.integers(0, 4_102_444_800_000),
    ),
    max_size=12,
)
_batches = st.lists(
    st.tuples(
        _records,
        st.one_of(st.none(), st.integers(0, 10**10)),  # millisBehindLatest
        st.booleans(),  # the processor checkpoints at the batch's last record
        st.sampled_from([None, None, "ShutdownException", "ThrottlingException", "InvalidStateException"]),
        st.booleans(),  # Jackson's compact JSON, or json.dumps' spaced one
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from([("TRIM_HORIZON", 0), ("LATEST", 0), (None, None), ("123456789", 2)]),
    batches=_batches,
    ending=st.sampled_from(["shardEnded", "shutdownRequested", "leaseLost", None]),
)
def test_generated_batches(
    start: tuple[str | None, int | None], batches: list[Any], ending: str | None
) -> None:
    lines: list[str] = [initialize(*start)]
    replies: list[str | None] = []
    plan: Plan = {}
    for number, (records, millis_behind, checkpoints, error, jackson) in enumerate(batches, start=1):
        lines.append(process_records(records, millis_behind, jackson=jackson))
        if checkpoints and records:
            plan[number] = ["last"]
            replies.append(reply(error=error))
    if ending is not None:
        lines.append(bare(ending))
        if ending != "leaseLost":
            plan[len(lines) - 1] = [()]
    result = assert_same(lines, replies, lambda: Recording(plan))
    assert result.raised is None and result.errors == []
    for (records, *_), call in zip(batches, result.calls[1:], strict=False):
        assert [(r[0], r[2], r[3], r[4], r[5]) for r in call[1][2]] == [
            (
                _decoded(r["data"]),
                r["sequenceNumber"],
                r["subSequenceNumber"],
                r["partitionKey"],
                r["approximateArrivalTimestamp"],
            )
            for r in records
        ]


def _decoded(data: str) -> bytes:
    return base64.b64decode(data)


# -- the record processor's suite, through the new process -------------------------------------------
def _run_with_kcl_protocol(self: ScriptedDaemon, processor: Any) -> None:
    _run_with_kcl_protocol.runs += 1  # type: ignore[attr-defined]
    kcl_protocol.KCLProcess(processor, input_file=self, output_file=self, error_file=self.stderr).run()


SUITE = sorted(
    name
    for name, value in vars(record_processor_suite).items()
    if name.startswith("test_") and callable(value)
)


@pytest.mark.parametrize("name", SUITE)
def test_the_record_processor_suite_through_kcl_protocol(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test of tests/functional/test_record_processor.py, `ScriptedDaemon.run` using the new process."""
    monkeypatch.setattr(ScriptedDaemon, "run", _run_with_kcl_protocol)
    _run_with_kcl_protocol.runs = 0  # type: ignore[attr-defined]
    test = getattr(record_processor_suite, name)
    fixtures = {"monkeypatch": monkeypatch}
    test(**{parameter: fixtures[parameter] for parameter in inspect.signature(test).parameters})
    assert _run_with_kcl_protocol.runs > 0  # type: ignore[attr-defined]


def test_the_child_process_runs_the_new_process() -> None:
    from consumer import kcl_child

    assert vars(kcl_child)["KCLProcess"] is kcl_protocol.KCLProcess


# -- records without an arrival time, counted by the record processor --------------------------------
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _count(arrived: int | None, *ahead: timedelta) -> tuple[MemorySink, RecordingDeadLetters, ScriptedDaemon]:
    """Events `ahead` of the processor's clock, in one poll of records arrived at `arrived`."""
    sink, dead_letters = MemorySink(), RecordingDeadLetters()
    processor = UsageRecordProcessor(
        sink, dead_letters, structlog.get_logger("test"), flush_interval=5.0, now=lambda: NOW
    )
    polled = [(n, orjson.dumps(event(at=NOW + offset))) for n, offset in enumerate(ahead, start=1)]
    daemon = ScriptedDaemon().initialize(SHARD).records(polled, arrived=arrived).shutdown_requested()
    kcl_protocol.KCLProcess(processor, input_file=daemon, output_file=daemon, error_file=daemon.stderr).run()
    return sink, dead_letters, daemon


def test_a_record_without_an_arrival_time_is_counted_by_its_events_own_time() -> None:
    """Arrival unknown: the event is counted, its time judged against the processor's clock."""
    sink, dead_letters, daemon = _count(
        None, timedelta(minutes=-1), timedelta(minutes=4), timedelta(minutes=30)
    )
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 2
    assert dead_letters.sent[0][0] == "3" and dead_letters.reasons == [Reason.FUTURE_TIMESTAMP]
    assert daemon.checkpoints == [("3", 0)] and daemon.statuses[-1] == "shutdownRequested"


def test_a_known_arrival_time_still_judges_the_events_time() -> None:
    """Arrival known: an event ahead of the clock but not of its arrival counts (replays decide alike)."""
    arrived = int((NOW + timedelta(minutes=30)).timestamp() * 1000)
    sink, dead_letters, _ = _count(arrived, timedelta(minutes=30))
    assert sink.items[("USER#alice@example.com", "TOTAL")]["calls"] == 1 and dead_letters.sent == []
