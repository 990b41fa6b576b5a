"""A real Prometheus server scrapes `metering consume`: metrics and health as an operator sees them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.cloudwatch import ENVIRONMENT, NAMESPACE
from metering.emulator import free_port, wait_until_listening
from tests.integration.conftest import Stack
from tests.integration.test_pipeline import make_events, put_events, wait_exact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
METRIC_OF = {"API_CALL": "ApiCalls", "API_AUTH_FAILED": "AuthFailures", "API_RATE_LIMITED": "RateLimited"}


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


def health(port: int, path: str = "/healthz") -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def cloudwatch_ground_truth(events: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(metric, minute or hour) -> the value CloudWatch must hold, from the events alone."""
    truth: Counter[tuple[str, str]] = Counter()
    users: dict[str, set[str]] = defaultdict(set)
    for e in events:
        truth[(METRIC_OF[e["eventType"]], e["timestamp"][:16])] += 1
        if e["userEmail"]:
            users[e["timestamp"][:13]].add(e["userEmail"])
    truth.update({("ActiveUsers", hour): len(emails) for hour, emails in users.items()})
    return dict(truth)


def cloudwatch_figures(stack: Stack, start: datetime, end: datetime) -> dict[tuple[str, str], float]:
    """What the emulator's CloudWatch holds for this stack's environment, by metric and period."""
    queries = [(name, "Sum", 60) for name in METRIC_OF.values()] + [("ActiveUsers", "Maximum", 3600)]
    reply = stack.cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": f"q{n}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [{"Name": ENVIRONMENT, "Value": stack.settings.environment}],
                    },
                    "Period": period,
                    "Stat": stat,
                },
            }
            for n, (name, stat, period) in enumerate(queries)
        ],
        StartTime=start,
        EndTime=end,
    )
    figures = {}
    for result, (name, _, period) in zip(reply["MetricDataResults"], queries, strict=True):
        for at, value in zip(result["Timestamps"], result["Values"], strict=True):
            stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M" if period == 60 else "%Y-%m-%dT%H")
            figures[(name, stamp)] = value
    return figures


def wait_cloudwatch_exact(stack: Stack, events: list[dict[str, Any]], timeout: float = 60) -> None:
    """CloudWatch's per-minute counts and hourly active users equal ground truth (published every 5 s)."""
    truth = cloudwatch_ground_truth(events)
    stamps = sorted(e["timestamp"] for e in events)
    start = datetime.fromisoformat(stamps[0].replace("Z", "+00:00")).replace(
        minute=0, second=0, microsecond=0
    )
    end = datetime.fromisoformat(stamps[-1].replace("Z", "+00:00")) + timedelta(hours=1)
    deadline, figures = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        figures = cloudwatch_figures(stack, start, end)
        if figures == truth:
            return
        time.sleep(1)
    assert figures == truth


def test_prometheus_and_cloudwatch_see_counts_lag_and_health(
    stack: Stack, prometheus: tuple[int, int]
) -> None:
    """Prometheus sees the consumer up, every event counted by type, each shard's lag and flushes;
    CloudWatch's figures read back (GetMetricData) equal ground truth."""
    prometheus_port, metrics_port = prometheus
    events = make_events(1500, seed=21)
    put_events(stack, events)
    bad = b'{"version": 9}'  # one record that cannot be counted
    stack.kinesis.put_record(StreamName=stack.settings.stream_name, Data=bad, PartitionKey="x")
    consumer = stack.start_consumer(METRICS_PORT=str(metrics_port), METRICS_PUBLISH_SECONDS="5")
    try:
        wait_exact(stack, events, consumer)
        assert health(metrics_port) == 200
        assert health(metrics_port, "/readyz") == 200
        wait_cloudwatch_exact(stack, events)
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


def test_healthz_turns_503_while_a_flush_stalls_and_200_after(stack: Stack) -> None:
    """A record processor stuck in a flush (fault point) fails /healthz after HEALTH_STALL_SECONDS;
    once it goes on, /healthz is 200 again and every count is exact."""
    port = free_port()
    events = make_events(300, seed=31)
    put_events(stack, events)
    consumer = stack.start_consumer(
        METRICS_PORT=str(port),
        METERING_FAULT="item-written@1:stall=25",
        HEALTH_STALL_SECONDS="12",
        WRITE_RETRY_SECONDS="5",
    )
    try:
        started = time.monotonic()
        _wait_health(port, 503, 120)  # both shards' first flush hangs 25 s; 12 s is the limit
        stalled_after = time.monotonic() - started
        _wait_health(port, 200, 90)
        print(
            f"\n/healthz 503 {stalled_after:.0f} s after start, 200 again {time.monotonic() - started:.0f} s"
        )
        wait_exact(stack, events, consumer)
    finally:
        assert consumer.stop() == 0, consumer.log_tail()


def _wait_health(port: int, status: int, timeout: float) -> None:
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            seen = health(port)
        except OSError:  # not listening yet
            seen = 0
        if seen == status:
            return
        time.sleep(1)
    pytest.fail(f"/healthz never answered {status} (last {seen})")
