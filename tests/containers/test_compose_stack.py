"""docker-compose.yml's pipeline run for real: counts equal what the traffic sent, Prometheus sees them,
and a stopped consumer flushes, checkpoints and comes back without counting anything twice.

The tests follow one run of the stack (the session's `stack`), in the order written here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from contract.table import COUNTER_OF
from metering.emulator import free_port, wait_until_listening
from tests.containers.conftest import (
    COMPOSE_FILE,
    METRICS_PORT,
    ROOT,
    Stack,
    events,
    get,
    sent_counters,
    wait_for,
)

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]


def service(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]
    return spec


@pytest.fixture(scope="module")
def sent(stack: Stack) -> dict[str, int]:
    """What the traffic service sent, once it has exited."""
    traffic = stack.container("traffic")
    assert stack.images.docker("wait", traffic, timeout=300).strip() == "0"
    return sent_counters(stack.logs(traffic))


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Debian's Prometheus on the host, with the stack's config aimed at the consumer container: its port."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is missing: bin/setup.sh installs Debian's prometheus package")
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    address = stack.address(stack.container("consumer"))
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"{address}:{METRICS_PORT}"]}]  # not published: its IP
    work, port = tmp_path_factory.mktemp("prometheus"), free_port()
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_listening(port, process=server)
        yield port
    finally:
        server.terminate()
        server.wait(30)


def _query(port: int, expression: str) -> dict[str, float]:
    """An instant PromQL query: each series' value by its `type` label."""
    body = get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
    result = json.loads(body or "{}").get("data", {}).get("result", [])
    return {series["metric"].get("type", ""): float(series["value"][1]) for series in result}


def test_the_consumer_turns_healthy(stack: Stack) -> None:
    """The compose health check (/healthz on the metrics port) passes once the consumer runs."""
    consumer = stack.container("consumer")
    wait_for("consumer healthy", lambda: stack.state(consumer, "Health.Status") == "healthy" or None, 120)


def test_counts_equal_what_the_traffic_sent(stack: Stack, sent: dict[str, int]) -> None:
    """`metering usage --json` in the stack shows exactly the calls, refusals and rate limits sent."""
    began = time.monotonic()
    wait_for("counts equal to what was sent", lambda: stack.counted() == sent or None, 120, 1)
    print(f"\n[compose] counted {sent}, exact {time.monotonic() - began:.1f} s after the traffic exited")
    assert stack.usage() == sent


def test_prometheus_scrapes_the_counted_events(prometheus: int, sent: dict[str, int]) -> None:
    """A real Prometheus scraping the container's /metrics counts each event type the traffic sent."""
    expected = {kind.value: float(sent[counter]) for kind, counter in COUNTER_OF.items() if sent[counter]}
    query = 'sum by (type) (metering_events_counted_total{job="metering", type=~"API_.*"})'
    scraped = wait_for(
        "Prometheus's counts as sent", lambda: _query(prometheus, query) == expected or None, 30
    )
    assert scraped


def test_stopping_the_consumer_flushes_and_checkpoints_within_its_grace(stack: Stack) -> None:
    """`docker-compose stop consumer`: every shard flushes within SHUTDOWN_GRACE_SECONDS, exit 0 in time."""
    consumer = stack.container("consumer")
    grace = float(service("consumer")["stop_grace_period"].removesuffix("s"))
    shutdown_grace = float(service("consumer")["environment"]["SHUTDOWN_GRACE_SECONDS"])
    requested = time.time()
    stack.compose("stop", "consumer", timeout=grace + 30)
    stopped = time.time() - requested
    print(f"\n[compose] consumer stopped in {stopped:.1f} s")
    assert stack.state(consumer, "ExitCode") == "0" and stopped < grace
    flushed = events(stack.logs(consumer), "shutdown_flushed")
    assert {line["shard"] for line in flushed} == {"shardId-000000000000", "shardId-000000000001"}
    assert all(_epoch(line["timestamp"]) - requested < shutdown_grace for line in flushed)


def test_a_restarted_consumer_counts_nothing_twice(stack: Stack, sent: dict[str, int]) -> None:
    """Started again, both shards resume from their checkpoints: nothing is read again, counts stay put."""
    stack.compose("start", "consumer")
    consumer = stack.container("consumer")

    def resumed() -> list[dict[str, Any]] | None:
        lines = events(stack.logs(consumer), "shard_initialized")
        found = [line for line in lines if line["checkpoint"] is not None]
        return found if len(found) == 2 else None

    wait_for("both shards resumed from a checkpoint", resumed, 90)
    time.sleep(6)  # past a flush interval (5 s): anything read again would be counted by now
    exposition = get(f"http://{stack.address(consumer)}:{METRICS_PORT}/metrics") or ""
    read = [s.value for f in text_string_to_metric_families(exposition) for s in f.samples
            if s.name == "metering_records_total"]  # fmt: skip
    assert read and sum(read) == 0
    assert stack.counted() == sent


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
