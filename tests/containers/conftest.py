"""Fixtures of the container tier: one engine and one build of both images for the whole session."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from consumer.settings import ConsumerSettings
from contract.events import EventType
from contract.table import COUNTER_OF, COUNTERS, GLOBAL
from reads import Table
from reads.usage import MINUTE, usage_buckets
from tests.containers import engine as engines

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION, LOCAL = "complical-usage-metering:latest", "complical-usage-metering:local"


def _from_image() -> str:
    """The name the Dockerfile's FROM uses, which the local base image is tagged as."""
    (name,) = {
        line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")
    }
    return name


@dataclass
class Images:
    engine: engines.Engine
    seconds: dict[str, float] = field(default_factory=dict)  # what each step took, for BENCHMARKS.md

    def docker(self, *args: str, timeout: float = 600) -> str:
        return self.engine.docker(*args, timeout=timeout).stdout

    def size(self, image: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", image))


@pytest.fixture(scope="session")
def engine() -> Iterator[engines.Engine]:
    try:
        with engines.engine() as running:
            yield running
    except engines.EngineUnavailable as exc:
        pytest.skip(f"no container engine can be started here: {exc}")


@pytest.fixture(scope="session")
def images(engine: engines.Engine) -> Images:
    """Both images, built once from the unchanged Dockerfile on the local base image."""
    built = Images(engine, {"engine start": engine.seconds_to_start})
    began = time.monotonic()
    engines.import_base(engine, _from_image())
    built.seconds["base image"] = time.monotonic() - began
    for name, extras in ((PRODUCTION, ""), (LOCAL, "local")):
        began = time.monotonic()
        built.docker(
            "build", "--quiet", "--build-arg", f"EXTRAS={extras}", "-t", name, str(ROOT), timeout=900
        )
        built.seconds[f"build {name}"] = time.monotonic() - began
    print(f"\n[images] {built.seconds}; sizes {[built.size(i) >> 20 for i in (PRODUCTION, LOCAL)]} MiB")
    return built


# --- the compose stack ----------------------------------------------------------------------------

COMPOSE_FILE = ROOT / "docker-compose.yml"
# Bounded traffic: `metering simulate` sends exactly TRAFFIC_RATE x TRAFFIC_SECONDS requests, then exits.
# Small: on a loaded 2-core machine the emulator, not the rate, sets how long it takes.
TRAFFIC = {"TRAFFIC_RATE": "20", "TRAFFIC_SECONDS": "15"}
METRICS_PORT = 9400
EMULATOR = "http://127.0.0.1:4566"  # the aws service's published port


@dataclass
class Stack:
    """docker-compose.yml's pipeline (aws, provision, consumer, traffic) under a project of its own."""

    images: Images
    project: str

    def compose(self, *args: str, timeout: float = 300) -> str:
        return self.compose_run(*args, timeout=timeout).stdout

    def compose_run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = ("docker-compose", "--project-name", self.project, "--file", str(COMPOSE_FILE), *args)
        return engines.run(*command, timeout=timeout, env=self.images.engine.env | TRAFFIC, cwd=ROOT)

    def container(self, service: str) -> str:
        """The service's container id (compose 1.29 lists exited ones too)."""
        return self.compose("ps", "-q", service).strip()

    def address(self, container: str) -> str:
        """The container's IP on the compose network: the host reaches unpublished ports there."""
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return self.images.docker("inspect", "--format", template, container).strip()

    def state(self, container: str, field: str) -> str:
        return self.images.docker("inspect", "--format", f"{{{{.State.{field}}}}}", container).strip()

    def logs(self, container: str) -> str:
        """What the container wrote: the KCL's lines and ours go to stderr."""
        shown = self.images.engine.docker("logs", container)
        return shown.stdout + shown.stderr

    def usage(self) -> dict[str, int]:
        """`metering usage --last 15m --json` as a user runs it in the stack: the GLOBAL counters, summed."""
        shown = self.compose("run", "--rm", "--no-deps", "-T", "consumer", "usage", "--last", "15m", "--json")
        return _summed(json.loads(shown)["buckets"])

    def counted(self) -> dict[str, int]:
        """The same read from here, through the emulator's published port (seconds faster than a `run`)."""
        client = boto3.client("dynamodb", endpoint_url=EMULATOR, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        now = datetime.now(UTC)
        table = Table(client, ConsumerSettings.from_env({"ENVIRONMENT": "local"}).analytics_table)
        buckets = usage_buckets(table, GLOBAL, MINUTE, now - timedelta(minutes=15), MINUTE.next(now))
        return _summed([bucket.document() for bucket in buckets])


def _summed(buckets: list[dict[str, Any]]) -> dict[str, int]:
    return {counter: sum(bucket[counter] for bucket in buckets) for counter in COUNTERS}


@pytest.fixture(scope="session")
def stack(images: Images) -> Iterator[Stack]:
    """The pipeline up, as the compose file's header runs it, with bounded traffic; removed after."""
    running = Stack(images, "metering-tier")
    began = time.monotonic()
    try:
        running.compose("up", "--detach", "--no-build", "aws", "provision", "consumer", "traffic")
        images.seconds["compose up"] = time.monotonic() - began
        yield running
    finally:
        running.compose("down", "--volumes", "--timeout", "10")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll until `probe` gives something other than None; fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:g} s")


def get(url: str, timeout: float = 2) -> str | None:
    """The body of a GET (error statuses too), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as refused:
        return str(refused.read().decode())
    except OSError:
        return None


def events(logs: str, name: str) -> list[dict[str, Any]]:
    """Our JSON log lines named `name`, from `docker logs` output (compose prefixes each line)."""
    found = []
    for line in logs.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            continue  # a KCL line with braces in it
        if isinstance(record, dict) and record.get("event") == name:
            found.append(record)
    return found


# The event type each of the simulator's outcomes sends: one event per request, whatever the outcome.
# The authorizer fails closed when the key store does not answer, and meters that as a refusal.
TYPE_OF = {
    "allowed": EventType.API_CALL,
    "rate_limited": EventType.API_RATE_LIMITED,
    "unauthorized": EventType.API_AUTH_FAILED,
    "key_store_unavailable": EventType.API_AUTH_FAILED,
}
SUMMARY = re.compile(
    r"simulated (\d+) requests in [\d.]+ s \((?P<outcomes>[^)]*)\); "
    r"usage events sent (?P<sent>\d+), failed (?P<failed>\d+), dropped (?P<dropped>\d+)"
)


def sent_counters(logs: str) -> dict[str, int]:
    """The counters the traffic's summary line says it caused, by the analytics table's names."""
    match = SUMMARY.search(logs)
    assert match, f"no summary line from the traffic:\n{logs[-2000:]}"
    counters = Counter(dict.fromkeys(COUNTER_OF.values(), 0))
    for outcome, n in re.findall(r"(\w+) (\d+)", match["outcomes"]):
        counters[COUNTER_OF[TYPE_OF[outcome]]] += int(n)
    # `failed` counts puts whose answer timed out (a loaded emulator); they may still have arrived.
    print(f"\n[compose] {match[0]}")
    assert int(match["dropped"]) == 0, match[0]
    return dict(counters)
