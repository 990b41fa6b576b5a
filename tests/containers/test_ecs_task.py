"""The production image run as ecs/consumer.yaml's task definition runs it, against the compose emulator.

`docker run` stands in for ECS: the task's environment (names resolved for the environment `local`),
an init as PID 1 (`initProcessEnabled`), the template's health check command, and SIGTERM then SIGKILL
after `StopTimeout`. The template sets no read-only root filesystem. Traffic waits in the stream before
the task starts, and the task flushes every FlushIntervalSeconds (60 s, the default): the counts are
exact only if `docker stop` makes it flush. Cold start is measured on the way (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml
from prometheus_client.parser import text_string_to_metric_families

from consumer.settings import ConsumerSettings
from tests.containers.conftest import (
    METRICS_PORT,
    PRODUCTION,
    ROOT,
    Stack,
    events,
    get,
    sent_counters,
    wait_for,
)

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]
TEMPLATE: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / "consumer.yaml"))
PSEUDO = {"Environment": "local", "AWS::Region": "us-east-1"}
# What the task role and the VPC give a task in AWS: here, the compose emulator.
AWS_HERE = {"AWS_ENDPOINT_URL": "http://aws:4566", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip
HEALTH_INTERVAL = "2s"  # the template's is 30 s: the same check, seen sooner
WAITING = "waiting"  # in `sent`: the events that wait in the stream for the task
MORE_TRAFFIC = ("--rate", "20", "--duration", "5", "--users", "5")


def _container() -> dict[str, Any]:
    (container,) = TEMPLATE["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return dict(container)


def _value(value: Any) -> str:
    """A task environment value as CloudFormation would resolve it, parameters at their defaults."""
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    resources, parameters = TEMPLATE["Resources"], TEMPLATE["Parameters"]
    if function == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: _value({"Ref": m[1]}), argument)
    if function == "Ref" and argument in PSEUDO:
        return PSEUDO[argument]
    if function == "Ref" and argument in parameters:
        return str(parameters[argument]["Default"])
    if function == "Ref":  # a stream's or a table's Ref is its name
        properties = resources[argument]["Properties"]
        return _value(properties.get("Name") or properties["TableName"])
    if function == "Fn::GetAtt":
        resource, attribute = argument
        return _value(resources[resource]["Properties"][attribute])
    raise ValueError(f"cannot resolve {value!r}")


def task_environment() -> dict[str, str]:
    return {entry["Name"]: _value(entry["Value"]) for entry in _container()["Environment"]}


@dataclass
class Task:
    container: str
    seconds: dict[str, float]  # from `docker run` to each milestone
    stopped_in: float
    exit_code: str
    logs: str


def _health_arguments() -> list[str]:
    check = _container()["HealthCheck"]
    assert check["Command"][0] == "CMD"
    return [
        f"--health-cmd={shlex.join(check['Command'][1:])}",
        f"--health-interval={HEALTH_INTERVAL}",
        f"--health-timeout={check['Timeout']}s",
        f"--health-retries={check['Retries']}",
        f"--health-start-period={check['StartPeriod']}s",
    ]


def _held_leases(address: str) -> int | None:
    body = get(f"http://{address}:{METRICS_PORT}/healthz")
    return None if body is None else int(json.loads(body)["leases_held"])


def _counted_events(address: str) -> float:
    """Usage events the task has aggregated (not yet flushed): access-log RESPONSE events left out."""
    exposition = get(f"http://{address}:{METRICS_PORT}/metrics") or ""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "metering_events_counted_total" and sample.labels["type"].startswith("API_")
    )


@pytest.fixture(scope="module")
def sent(stack: Stack) -> dict[str, int]:
    """All the stack's traffic, then more with no consumer running (it waits in the stream): the counters."""
    traffic = stack.container("traffic")
    assert stack.images.docker("wait", traffic, timeout=300).strip() == "0"
    first = sent_counters(stack.logs(traffic))
    wait_for("the stack's traffic counted", lambda: stack.counted() == first or None, 120, 1)
    stack.compose("stop", "consumer", timeout=120)
    more = stack.compose_run("run", "--rm", "--no-deps", "-T", "traffic", "simulate", *MORE_TRAFFIC)
    then = sent_counters(more.stderr)
    return {counter: first[counter] + then[counter] for counter in first} | {WAITING: sum(then.values())}


@pytest.fixture(scope="module")
def task(stack: Stack, sent: dict[str, int]) -> Task:
    """The task from `docker run` to `docker stop -t <StopTimeout>`, its milestones timed."""
    stop_timeout = str(_container()["StopTimeout"])
    environment = [f"--env={name}={value}" for name, value in (task_environment() | AWS_HERE).items()]
    network = f"{stack.project}_default"
    began = time.monotonic()
    container = stack.images.docker(
        "run", "--detach", "--init", f"--network={network}", f"--stop-timeout={stop_timeout}",
        *environment, *_health_arguments(), PRODUCTION,
    ).strip()  # fmt: skip
    try:
        address = stack.address(container)
        seconds = {}
        wait_for("/healthz answers", lambda: _held_leases(address) is not None or None, 120, 0.1)
        seconds["/healthz answers"] = time.monotonic() - began
        wait_for("a lease held", lambda: (_held_leases(address) or 0) > 0 or None, 180, 0.1)
        seconds["first lease held"] = time.monotonic() - began
        wait_for("an event aggregated", lambda: _counted_events(address) > 0 or None, 120, 0.1)
        seconds["first event aggregated"] = time.monotonic() - began
        wait_for("healthy", lambda: stack.state(container, "Health.Status") == "healthy" or None, 120, 0.2)
        seconds["healthy"] = time.monotonic() - began
        # Stopped before reading everything, the rest would wait for the next task: read it all first.
        wait_for("all that waited read", lambda: _counted_events(address) == sent[WAITING] or None, 120)
        print(f"\n[ecs task] cold start { ({k: round(v, 1) for k, v in seconds.items()}) }")
        requested = time.monotonic()
        stack.images.docker("stop", "--time", stop_timeout, container, timeout=float(stop_timeout) + 30)
        stopped_in = time.monotonic() - requested
        print(f"[ecs task] stopped in {stopped_in:.1f} s")
        return Task(container, seconds, stopped_in, stack.state(container, "ExitCode"), stack.logs(container))
    except BaseException:
        print(stack.logs(container)[-3000:])  # what the task said before it went wrong
        raise
    finally:
        stack.images.docker("rm", "--force", container)


def test_the_task_environment_at_the_templates_defaults_is_a_valid_configuration() -> None:
    """The consumer accepts the task's environment as deployed (HEALTH_POLL_SECONDS once made it refuse)."""
    environment = task_environment()
    assert environment["USAGE_STREAM_NAME"] == "complical-usage-stream-local"
    assert environment["FLUSH_INTERVAL_SECONDS"] == "60"
    ConsumerSettings.from_env(environment)  # raises ConfigError on a contradiction


def test_the_task_turns_healthy_under_an_init(task: Task) -> None:
    """The template's health check command passes, with an init as PID 1 (initProcessEnabled)."""
    assert "healthy" in task.seconds


def test_docker_stop_flushes_then_the_task_exits_0(task: Task) -> None:
    """SIGTERM: every shard flushes and the task exits 0 well before StopTimeout's SIGKILL."""
    assert task.exit_code == "0" and task.stopped_in < float(_container()["StopTimeout"])
    flushed = {line["shard"] for line in events(task.logs, "shutdown_flushed")}
    assert flushed == {"shardId-000000000000", "shardId-000000000001"}


def test_counts_stay_exact_through_the_task(stack: Stack, task: Task, sent: dict[str, int]) -> None:
    """What waited in the stream is counted once, by the shutdown's flush (the interval is 60 s)."""
    assert stack.counted() == {counter: n for counter, n in sent.items() if counter != WAITING}
