"""The real producer's usage batches (contract.batch) through the real MultiLangDaemon, at the highest
rate this machine sustains: exact in every contract item, also through a kill -9 mid-stream.

    BATCH_RATE=10000 BATCH_SECONDS=30 .venv/bin/pytest -m integration -s tests/integration/test_batches.py
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from authorizer.producer import KinesisProducer
from tests.integration.conftest import Stack
from tests.integration.test_pipeline import make_events, wait_exact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RATE = float(os.environ.get("BATCH_RATE", "5000"))  # events/s
SECONDS = float(os.environ.get("BATCH_SECONDS", "10"))


def test_batches_at_rate_count_exactly_through_a_kill_9(stack: Stack) -> None:
    events = make_events(int(RATE * SECONDS), seed=12)
    # One producer stands for every container: its queue holds a second of traffic, not a Lambda's.
    producer = KinesisProducer(stack.kinesis, stack.settings.stream_name, max_queue=int(RATE))
    consumer = stack.start_consumer()
    half = threading.Event()
    started = time.monotonic()

    def drive() -> None:
        for i, event in enumerate(events):
            if i % 100 == 0:  # paced in steps of 10 ms at 10,000/s
                time.sleep(max(0.0, started + i / RATE - time.monotonic()))
            if i == len(events) // 2:
                half.set()
            producer.emit(event)
        assert producer.flush(60)

    driver = threading.Thread(target=drive)
    driver.start()
    half.wait()
    consumer.kill_hard()  # mid-stream, with batches half flushed
    restarted = stack.start_consumer("restarted")
    driver.join()
    driven = time.monotonic() - started
    try:
        stats = producer.stats()
        assert (stats.sent, stats.failed, stats.dropped) == (len(events), 0, 0)
        behind = wait_exact(stack, events, restarted)
        print(
            f"\n[batches] {len(events)} events at {len(events) / driven:,.0f}/s for {driven:.1f} s in "
            f"{stats.records} records ({len(events) / stats.records:.1f} events/record), consumer killed -9 "
            f"half way and restarted: exact {behind:.1f} s after the last put"
        )
    finally:
        producer.close(5)
        assert restarted.stop() == 0, restarted.log_tail()
