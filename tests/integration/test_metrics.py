"""A real Prometheus server scrapes `metering consume`: metrics and health as an operator sees them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from metering.emulator import free_port, wait_until_listening
from tests.integration.conftest import Stack
from tests.integration.test_pipeline import make_events, put_events, wait_exact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Debian's prometheus, scraping a consumer's metrics port every second: (prometheus, target)."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: bin/setup.sh installs Debian's prometheus package"
    target, port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: metering\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(port)
        yield port, target
    finally:
        server.terminate()
        server.wait(30)


def query(port: int, expression: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as reply:
        result = json.load(reply)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_prometheus_scrapes_counts_lag_and_health(stack: Stack, prometheus: tuple[int, int]) -> None:
    """Prometheus sees the consumer up, every event counted by type, each shard's lag and flushes."""
    prometheus_port, metrics_port = prometheus
    events = make_events(1500, seed=21)
    put_events(stack, events)
    bad = b'{"version": 9}'  # one record that cannot be counted
    stack.kinesis.put_record(StreamName=stack.settings.stream_name, Data=bad, PartitionKey="x")
    consumer = stack.start_consumer(METRICS_PORT=str(metrics_port))
    try:
        wait_exact(stack, events, consumer)
        assert health(metrics_port) == 200
        deadline = time.monotonic() + 60
        seen: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            seen = {
                "up": query(prometheus_port, 'up{job="metering"}'),
                "daemon": query(prometheus_port, "metering_daemon_up"),
                "events": query(prometheus_port, "sum(metering_events_counted_total)"),
                "rejected": query(prometheus_port, "sum(metering_records_rejected_total)"),
                "shards_flushed": query(prometheus_port, "count(metering_last_flush_timestamp_seconds)"),
                "lag": query(prometheus_port, "max(metering_millis_behind_latest)"),
            }
            if seen["events"] == 1500 and seen["rejected"] == 1 and seen["shards_flushed"] == 2:
                break
            time.sleep(1)
        assert seen["up"] == 1 and seen["daemon"] == 1, seen
        assert (seen["events"], seen["rejected"], seen["shards_flushed"]) == (1500, 1, 2), seen
        assert seen["lag"] is not None
    finally:
        assert consumer.stop() == 0, consumer.log_tail()
