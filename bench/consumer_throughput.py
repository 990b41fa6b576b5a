"""Consumer throughput on one core: the pure core, and the whole record processor through KCLProcess.

    .venv/bin/python -m bench.consumer_throughput [--events 60000]

Prints records per second for each stage, measured in one run (ratios are what to compare on a
noisy machine), and the peak memory of the aggregation. The processor's metrics run in
prometheus-client's multiprocess (mmap) mode, as in production.
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

import orjson
import structlog

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.metrics import MULTIPROC_ENV
from consumer.processor import LoggedDeadLetters, UsageRecordProcessor
from consumer.sinks.memory import MemorySink
from consumer.testing import ScriptedDaemon, event

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def payloads(count: int, users: int = 1000) -> list[bytes]:
    rng = random.Random(1)  # noqa: S311 - test data, not secrets
    start = NOW - timedelta(hours=1)
    return [
        orjson.dumps(
            event(
                email=f"user{rng.randrange(users)}@example.com",
                at=start + timedelta(milliseconds=rng.randrange(3_600_000)),
            )
        )
        for _ in range(count)
    ]


def rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def stdlib_json(data: list[bytes]) -> None:
    for raw in data:
        json.loads(raw)


def decode_only(data: list[bytes]) -> None:
    for raw in data:
        decode_event(raw, NOW)


def decode_and_aggregate(data: list[bytes]) -> Aggregate:
    aggregate = Aggregate()
    for raw in data:
        aggregate.add(decode_event(raw, NOW))
    return aggregate


def through_kclprocess(data: list[bytes], batch: int = 1000) -> None:
    """The real KCLProcess and record processor, fed protocol lines from memory; counts kept in memory."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(io.StringIO()))
    log = structlog.get_logger("bench")
    sink = MemorySink()
    daemon = ScriptedDaemon().initialize("shardId-000000000000")
    for start in range(0, len(data), batch):
        daemon.records([(start + i + 1, raw) for i, raw in enumerate(data[start : start + batch])])
    daemon.shutdown_requested()
    daemon.run(UsageRecordProcessor(sink, LoggedDeadLetters(log), log, flush_interval=1.0, now=lambda: NOW))
    hours = [v["calls"] for (pk, sk), v in sink.items.items() if pk == "GLOBAL" and sk.startswith("HOUR#")]
    assert sum(hours) == len(data)


def main() -> None:
    if MULTIPROC_ENV not in os.environ:  # metrics as `metering consume` runs them; chosen at import
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="metering-bench-")
        os.execv(sys.executable, [sys.executable, "-m", "bench.consumer_throughput", *sys.argv[1:]])  # noqa: S606
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    count = parser.parse_args().events
    data = payloads(count)
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
    print(f"{count} events, {size:.0f} bytes each on average, 1000 users over one hour, one core")
    print(f"{'stage':<40} {'records/s':>12} {'vs json.loads':>14}")
    baseline = figures["stdlib json.loads only (baseline)"]
    for name, value in figures.items():
        print(f"{name:<40} {value:>12,.0f} {value / baseline:>13.2f}x")
    print(f"aggregation of {count} events: {len(aggregate.items)} items, peak {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
