"""Consumer throughput on one core: the pure core, and the whole record processor through KCLProcess.

    .venv/bin/python -m bench.consumer_throughput [--events 60000] [--rounds 3] [--events-per-record 25]

Prints records per second for each stage, measured in one run (ratios are what to compare on a
noisy machine), and the peak memory of the aggregation. The processor's metrics run in
prometheus-client's multiprocess (mmap) mode, as in production. Every figure is CPU time of this
process (`time.process_time`): events per second of one core, whatever else the machine runs.

Then the protocol stages, fed the same protocol lines from memory (built before the clock starts),
each the best of `--rounds` interleaved runs: the floor (stock amazon_kclpy `KCLProcess` and a
processor that only `json.loads` each record's data), that processor through
`consumer.kcl_protocol.KCLProcess` (the protocol's own gain), the whole processor through the stock
`KCLProcess` and through `consumer.kcl_protocol.KCLProcess`, and the whole processor called
directly with inputs decoded beforehand (no protocol at all: the most any protocol could reach).
One event per record, one core: records/s is events/s per core. Last, the whole processor through
`consumer.kcl_protocol.KCLProcess` fed the same events in usage batches (contract.batch, version 2,
`--events-per-record` each, as the authorizer's producer packs them): events/s per core, against
the floor's events/s on version-1 records (one event each).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from amazon_kclpy import kcl
from amazon_kclpy.v3.processor import RecordProcessorBase

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.kcl_protocol import KCLProcess
from consumer.metrics import MULTIPROC_ENV
from consumer.processor import LoggedDeadLetters, UsageRecordProcessor
from consumer.sinks.memory import MemorySink
from consumer.testing import ScriptedDaemon, event
from contract.batch import encode_batch

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def payloads(count: int, users: int = 1000, per_second: float = 10_000) -> list[bytes]:
    """Events of `users` arriving at `per_second` (issue 12's 10,000/s from 1,000 users), in time order;
    a low rate spreads them over more minutes, as a replay of quiet hours does."""
    rng = random.Random(1)  # noqa: S311 - test data, not secrets
    span_ms = int(count / per_second * 1000)
    start = NOW - timedelta(milliseconds=span_ms)
    offsets = sorted(rng.randrange(max(span_ms, 1)) for _ in range(count))
    return [
        orjson.dumps(
            event(
                email=f"user{rng.randrange(users)}@example.com",
                at=start + timedelta(milliseconds=offset),
                ip=f"198.51.100.{rng.randrange(1, 200)}",
            )
        )
        for offset in offsets
    ]


def rate(count: int, work: Callable[[], object]) -> float:
    """Events per second of CPU time: a busy machine slows the clock, not the CPU time."""
    started = time.process_time()
    work()
    return count / (time.process_time() - started)


def batched(data: list[bytes], per_record: int) -> list[bytes]:
    """The events packed into usage batches (version 2) of `per_record` events."""
    return [encode_batch(data[i : i + per_record]) for i in range(0, len(data), per_record)]


def stdlib_json(data: list[bytes]) -> None:
    for raw in data:
        json.loads(raw)


def decode_only(data: list[bytes]) -> None:
    for raw in data:
        decode_event(raw, NOW)


def decode_and_aggregate(data: list[bytes]) -> Aggregate:
    aggregate = Aggregate()
    for raw in data:
        aggregate.add(decode_event(raw, NOW), raw)
    return aggregate


def through_kclprocess(data: list[bytes], batch: int = 1000) -> None:
    """The real KCLProcess and record processor, fed protocol lines from memory; counts kept in memory."""
    sink = MemorySink()
    scripted(data, batch).run(whole_processor(sink))
    check_counted(sink, len(data))


class JsonLoadsOnly(RecordProcessorBase):  # type: ignore[misc]
    """The floor's processor: only `json.loads` of each record's data."""

    def initialize(self, initialize_input: Any) -> None:
        pass

    def process_records(self, process_records_input: Any) -> None:
        for record in process_records_input.records:
            json.loads(record.binary_data)

    def lease_lost(self, lease_lost_input: Any) -> None:
        pass

    def shard_ended(self, shard_ended_input: Any) -> None:
        pass

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        pass


class _AlwaysCheckpoints:
    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        pass


def scripted(data: list[bytes], batch: int = 1000) -> ScriptedDaemon:
    """The daemon's lines for `data` (initialize, one processRecords per batch, shutdownRequested)."""
    daemon = ScriptedDaemon().initialize("shardId-000000000000")
    for start in range(0, len(data), batch):
        daemon.records([(start + i + 1, raw) for i, raw in enumerate(data[start : start + batch])])
    return daemon.shutdown_requested()


def whole_processor(sink: MemorySink) -> UsageRecordProcessor:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(io.StringIO()))
    log = structlog.get_logger("bench")
    return UsageRecordProcessor(sink, LoggedDeadLetters(log), log, flush_interval=1.0, now=lambda: NOW)


def check_counted(sink: MemorySink, count: int) -> None:
    hours = [v["calls"] for (pk, sk), v in sink.items.items() if pk == "GLOBAL" and sk.startswith("HOUR#")]
    assert sum(hours) == count


def protocol_stage(data: list[bytes], stage: str, per_record: int = 1) -> float:
    """Events/s of one protocol stage; the lines (or inputs) are prepared before the clock starts."""
    count, daemon, sink = len(data), scripted(data), MemorySink()
    if stage == "batches":  # the same events, `per_record` to a record: as many events per poll
        daemon = scripted(batched(data, per_record), batch=max(1, 1000 // per_record))
    if stage == "floor":
        return rate(count, lambda: kcl.KCLProcess(JsonLoadsOnly(), daemon, daemon, daemon.stderr).run())
    if stage == "floor-fast":  # the protocol's own gain: the floor's processor through the new process
        return rate(count, lambda: KCLProcess(JsonLoadsOnly(), daemon, daemon, daemon.stderr).run())
    processor = whole_processor(sink)
    if stage == "stock":
        figure = rate(count, lambda: kcl.KCLProcess(processor, daemon, daemon, daemon.stderr).run())
    elif stage in ("fast", "batches"):
        figure = rate(count, lambda: KCLProcess(processor, daemon, daemon, daemon.stderr).run())
    else:  # "direct": the inputs decoded beforehand, the processor called as the protocol would
        inputs: list[Any] = []
        KCLProcess(_Collect(inputs), daemon, daemon, daemon.stderr).run()
        figure = rate(count, lambda: _call_directly(processor, inputs))
    check_counted(sink, count)
    assert not daemon.stderr.getvalue(), daemon.stderr.getvalue()
    return figure


class _Collect(JsonLoadsOnly):
    def __init__(self, inputs: list[Any]) -> None:
        self._inputs = inputs

    def initialize(self, initialize_input: Any) -> None:
        self._inputs.append(("initialize", initialize_input))

    def process_records(self, process_records_input: Any) -> None:
        self._inputs.append(("process_records", process_records_input))

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._inputs.append(("shutdown_requested", shutdown_requested_input))


def _call_directly(processor: UsageRecordProcessor, inputs: list[Any]) -> None:
    checkpointer = _AlwaysCheckpoints()
    for method, argument in inputs:
        if hasattr(argument, "checkpointer"):
            argument.checkpointer = checkpointer
        getattr(processor, method)(argument)


PROTOCOL_STAGES = {
    "floor": "floor: stock KCLProcess + json.loads",
    "floor-fast": "json.loads only via kcl_protocol",
    "stock": "processor via stock KCLProcess",
    "fast": "processor via kcl_protocol.KCLProcess",
    "direct": "processor alone, no protocol",
    "batches": "processor via kcl_protocol, usage batches",
}


def main() -> None:
    if MULTIPROC_ENV not in os.environ:  # metrics as `metering consume` runs them; chosen at import
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="metering-bench-")
        os.execv(sys.executable, [sys.executable, "-m", "bench.consumer_throughput", *sys.argv[1:]])  # noqa: S606
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each protocol stage")
    parser.add_argument("--per-second", type=float, default=10_000, help="the traffic's rate (event time)")
    parser.add_argument("--events-per-record", type=int, default=25, help="of the usage batches (v2)")
    args = parser.parse_args()
    count = args.events
    data = payloads(count, per_second=args.per_second)
    size = sum(map(len, data)) / count
    base64.b64encode(data[0])  # the protocol's encoding, exercised inside KCLProcess
    figures = {
        "stdlib json.loads only (baseline)": rate(count, lambda: stdlib_json(data)),
        "decode + validate (msgspec)": rate(count, lambda: decode_only(data)),
        "decode + aggregate (pure core)": rate(count, lambda: decode_and_aggregate(data)),
        "whole processor through KCLProcess": rate(count, lambda: through_kclprocess(data)),
    }
    tracemalloc.start()
    aggregate = decode_and_aggregate(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"{count} events, {size:.0f} bytes each on average, 1000 users at {args.per_second:,.0f} events/s "
        "(event time), one core"
    )
    print(f"{'stage':<40} {'records/s':>12} {'vs json.loads':>14}")
    baseline = figures["stdlib json.loads only (baseline)"]
    for name, value in figures.items():
        print(f"{name:<40} {value:>12,.0f} {value / baseline:>13.2f}x")
    print(f"aggregation of {count} events: {len(aggregate.items)} items, peak {peak / 2**20:.1f} MiB")
    best = dict.fromkeys(PROTOCOL_STAGES, 0.0)
    for _ in range(args.rounds):
        for stage in PROTOCOL_STAGES:
            best[stage] = max(best[stage], protocol_stage(data, stage, args.events_per_record))
    floor = best["floor"]
    batch_bytes = sum(map(len, batched(data, args.events_per_record))) / count
    print(f"protocol lines prepared beforehand, best of {args.rounds} interleaved rounds")
    print(f"usage batches: {args.events_per_record} events/record, {batch_bytes:.0f} bytes/event compressed")
    print(f"{'stage':<40} {'events/s':>12} {'vs floor':>14}")
    for stage, name in PROTOCOL_STAGES.items():
        print(f"{name:<40} {best[stage]:>12,.0f} {best[stage] / floor:>13.2f}x")


if __name__ == "__main__":
    main()
