"""The container deployment (Dockerfile, docker-compose.yml, ecs/consumer.yaml) against the code it runs.

Each file is read the way its tool reads it: `docker-compose config` for the compose file, cfn-lint's
own YAML loader for the CloudFormation template, Docker's line continuation rules for the
Dockerfile. No Docker engine is needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import cfn_yaml

from consumer import leases
from consumer.settings import ConsumerSettings
from contract.table import EXPIRES_AT, LEGACY_BUCKET_INDEX, analytics_table_spec, bucket_index
from metering.cli import _parser
from metering.commands.provision import STREAM_RETENTION_HOURS, STREAM_SHARDS

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVICES = {"aws", "provision", "consumer", "traffic"}
MONITORING = {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}  # official images
DEFAULT_GRACE = ConsumerSettings.from_env({}).shutdown_grace_seconds


# --- docker-compose.yml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (bin/setup.sh installs Debian's docker-compose)")
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _seconds(duration: str) -> float:
    """A compose duration (`60s`, `1m30s`, `1m0s`) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _metering(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this project's image (all but Prometheus and Grafana)."""
    return {name: compose["services"][name] for name in SERVICES}


def test_compose_runs_every_service_from_one_image_with_the_emulator(compose: dict[str, Any]) -> None:
    """aws, provision, consumer and traffic share one image, built here with the emulator extras."""
    assert set(compose["services"]) == SERVICES | set(MONITORING)
    services = _metering(compose)
    assert len({service["image"] for service in services.values()}) == 1
    for service in services.values():
        assert Path(service["build"]["context"]) == ROOT
        assert service["build"]["args"]["EXTRAS"] == "local"
        assert service["init"] is True


def test_compose_commands_are_metering_subcommands(compose: dict[str, Any]) -> None:
    """Every service's command parses with the `metering` CLI (the image's entrypoint)."""
    commands = {name: service["command"] for name, service in _metering(compose).items()}
    for command in commands.values():
        _parser().parse_args(command)
    assert commands["consumer"] == ["consume"]
    assert commands["provision"] == ["provision"]
    assert commands["traffic"][0] == "simulate"
    emulator = _parser().parse_args(commands["aws"])
    assert (emulator.host, emulator.port) == ("0.0.0.0", 4566)


def test_compose_points_every_service_at_the_emulator(compose: dict[str, Any]) -> None:
    """boto3 and the KCL find the emulator by AWS_ENDPOINT_URL, with fake credentials and a region."""
    for service in _metering(compose).values():
        env = service["environment"]
        assert env["AWS_ENDPOINT_URL"] == "http://aws:4566"
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"]
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
        ConsumerSettings.from_env(env)  # valid configuration


def test_compose_starts_in_order(compose: dict[str, Any]) -> None:
    """Provisioning waits for a listening emulator; consumer and traffic wait for provisioning."""
    services = compose["services"]
    assert "healthcheck" in services["aws"]
    assert services["provision"]["depends_on"] == {"aws": {"condition": "service_healthy"}}
    for name in ("consumer", "traffic"):
        assert services[name]["depends_on"] == {"provision": {"condition": "service_completed_successfully"}}


def test_compose_gives_the_consumer_time_to_flush_on_stop(compose: dict[str, Any]) -> None:
    """The consumer is killed only after SHUTDOWN_GRACE_SECONDS, with room for the JVM to exit."""
    consumer = compose["services"]["consumer"]
    grace = float(consumer["environment"].get("SHUTDOWN_GRACE_SECONDS", DEFAULT_GRACE))
    assert _seconds(consumer["stop_grace_period"]) >= grace + 15
    assert consumer["restart"] == "on-failure"


def test_compose_checks_the_consumer_health_on_its_metrics_port(compose: dict[str, Any]) -> None:
    """The consumer's healthcheck asks /healthz on the port `metering consume` serves."""
    consumer = compose["services"]["consumer"]
    port = ConsumerSettings.from_env(consumer["environment"]).metrics_port
    assert f"127.0.0.1:{port}/healthz" in " ".join(consumer["healthcheck"]["test"])


def _published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host IP, container port) of each published port, in docker-compose v1's or v2's notation."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):  # v1: "127.0.0.1:9090:9090/tcp"
            host_ip, _, target = port.split("/")[0].rsplit(":", 2)
            ports.append((host_ip, int(target)))
        else:
            ports.append((port.get("host_ip", ""), int(port["target"])))
    return ports


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a path inside the container comes from on the host, through the service's bind mounts."""
    for volume in service["volumes"]:
        if isinstance(volume, str):  # v1: "/host/path:/container/path:ro"
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        if container_path == target or container_path.startswith(target + "/"):
            return Path(source) / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted")


def test_compose_runs_prometheus_and_grafana_from_pinned_official_images(compose: dict[str, Any]) -> None:
    """A version tag each, never latest: the monitoring config is written for them."""
    for name, image in MONITORING.items():
        assert re.fullmatch(rf"{image}:v?\d+\.\d+\.\d+", compose["services"][name]["image"])


def test_compose_publishes_ports_on_localhost_only(compose: dict[str, Any]) -> None:
    """The emulator takes any credentials and Grafana admits anonymous viewers: never on the network."""
    published = {name: _published(service) for name, service in compose["services"].items()}
    assert {name for name, ports in published.items() if ports} == {"aws", *MONITORING}
    assert {host_ip for ports in published.values() for host_ip, _ in ports} == {"127.0.0.1"}
    assert published["prometheus"] == [("127.0.0.1", 9090)]
    assert published["grafana"] == [("127.0.0.1", 3000)]


def test_compose_prometheus_scrapes_the_consumer_metrics_port(compose: dict[str, Any]) -> None:
    """Prometheus's mounted config scrapes /metrics on the consumer service's METRICS_PORT."""
    prometheus = compose["services"]["prometheus"]
    (flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    config = yaml.safe_load(_host_path(prometheus, flag.split("=", 1)[1]).read_text())
    port = ConsumerSettings.from_env(compose["services"]["consumer"]["environment"]).metrics_port
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets == [f"consumer:{port}"]


def test_compose_grafana_provisions_prometheus_and_the_dashboards(compose: dict[str, Any]) -> None:
    """The provisioning and dashboard files are mounted where Grafana and its provider look."""
    grafana = compose["services"]["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "metering.yml").read_text())["providers"]
    assert list(_host_path(grafana, provider["options"]["path"]).glob("*.json"))
    env = grafana["environment"]
    assert _host_path(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# --- Dockerfile -----------------------------------------------------------------------------------


def _instructions(path: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) as Docker reads them: comments dropped, continuations joined."""
    logical = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.strip():
            instruction, _, arguments = logical.strip().partition(" ")
            yield instruction.upper(), arguments.strip()
        logical = ""


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(ROOT / "Dockerfile"):
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _all(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def test_dockerfile_builds_on_python_311_slim_bookworm_with_java_17() -> None:
    """Every stage starts from python:3.11-slim-bookworm; the final one installs the JRE lean."""
    stages = _stages()
    for stage in stages:
        assert stage[0][1].split()[0] == "python:3.11-slim-bookworm"
    installs = [run for run in _all(stages[-1], "RUN") if "openjdk-17-jre-headless" in run]
    assert len(installs) == 1
    assert "apt-get install -y --no-install-recommends" in installs[0]
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]


def test_dockerfile_runs_metering_consume_as_a_non_root_user() -> None:
    """The image runs as a created, non-root user; SIGTERM stops it; `metering consume` by default."""
    final = _stages()[-1]
    user = _all(final, "USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    creates = rf"useradd .*--uid {user}\b" if user.isdigit() else rf"useradd .*\b{user}$"
    assert any(re.search(creates, run) for run in _all(final, "RUN"))
    assert _all(final, "STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(_all(final, "ENTRYPOINT")[-1]) == ["metering"]
    assert json.loads(_all(final, "CMD")[-1]) == ["consume"]


def test_dockerfile_installs_the_project_and_puts_properties_where_the_daemon_reads_them() -> None:
    """A regular pip install, and properties/ copied to consumer.daemon.PROPERTIES_DIR."""
    build = _stages()[0]
    runs = _all(build, "RUN")
    installs = [run for run in runs if "pip install" in run]
    assert installs and not any(flag in run for run in installs for flag in (" -e ", "--editable"))
    assert any("daemon.PROPERTIES_DIR" in run and "cp -r" in run for run in runs)


def test_dockerignore_keeps_only_what_the_image_copies() -> None:
    """An allow-list: each COPY source from the context is allowed, and nothing else is."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in _stages()
        for arguments in _all(stage, "COPY")
        if not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert copied == allowed
    packages = {name.rstrip("*") for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, "the image must copy every package pyproject.toml installs"


# --- ecs/consumer.yaml ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / "consumer.yaml"))
    return template


def _resource(stack: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = stack["Resources"][name]["Properties"]
    return properties


def _named(value: Any) -> str:
    """A name written `!Sub ...-${Environment}`, for the environment `test`."""
    assert set(value) == {"Fn::Sub"}, value
    return str(value["Fn::Sub"]).replace("${Environment}", "test")


def _container(stack: dict[str, Any]) -> dict[str, Any]:
    (container,) = _resource(stack, "TaskDefinition")["ContainerDefinitions"]
    return dict(container)


def test_stack_analytics_table_matches_the_table_the_code_creates(stack: dict[str, Any]) -> None:
    """Keys, attributes, the by-bucket index, billing, SSE and TTL equal analytics_table_spec."""
    table = _resource(stack, "AnalyticsTable")
    spec = analytics_table_spec(ConsumerSettings.from_env({"ENVIRONMENT": "test"}).analytics_table)
    assert _named(table["TableName"]) == spec["TableName"]
    assert table["KeySchema"] == spec["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(spec["AttributeDefinitions"], key=str)
    # A stack from before the keys-only index keeps its old one for one update (docs/deploy.md).
    condition, upgrading, indexes = table["GlobalSecondaryIndexes"]["Fn::If"]
    assert condition == "KeepLegacyIndex" and indexes == spec["GlobalSecondaryIndexes"]
    assert upgrading == [*spec["GlobalSecondaryIndexes"], bucket_index(LEGACY_BUCKET_INDEX, "ALL")]
    assert table["BillingMode"] == spec["BillingMode"]
    assert table["SSESpecification"] == {"SSEEnabled": spec["SSESpecification"]["Enabled"]}
    assert table["TimeToLiveSpecification"] == {"AttributeName": EXPIRES_AT, "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_stack_stream_and_queue_match_what_provision_creates(stack: dict[str, Any]) -> None:
    """Same names, shards, retention and encryption as `metering provision`."""
    settings = ConsumerSettings.from_env({"ENVIRONMENT": "test"})
    stream = _resource(stack, "UsageStream")
    assert _named(stream["Name"]) == settings.stream_name
    # provisioned by default, with the shards `metering provision` creates
    assert stream["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}
    assert stack["Parameters"]["StreamMode"]["Default"] == "PROVISIONED"
    assert stream["ShardCount"] == {"Fn::If": ["Provisioned", {"Ref": "ShardCount"}, {"Ref": "AWS::NoValue"}]}
    assert stack["Parameters"]["ShardCount"]["Default"] == STREAM_SHARDS
    assert stream["RetentionPeriodHours"] == STREAM_RETENTION_HOURS
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    queue = _resource(stack, "DeadLetterQueue")
    assert _named(queue["QueueName"]) == settings.dlq_name
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_stack_task_environment_is_read_by_the_settings(stack: dict[str, Any]) -> None:
    """Every variable the task sets is one the consumer reads, and the literal ones are valid."""

    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    ConsumerSettings.from_env(Recording())
    env = {item["Name"]: item["Value"] for item in _container(stack)["Environment"]}
    assert set(env) <= read
    # unset on purpose: the default, the host name, is unique per Fargate task
    assert "KCL_WORKER_ID" not in env
    ConsumerSettings.from_env({name: value for name, value in env.items() if isinstance(value, str)})


def test_stack_stops_the_task_after_the_shutdown_grace(stack: dict[str, Any]) -> None:
    """ECS kills the container only after SHUTDOWN_GRACE_SECONDS plus time for the JVM to exit."""
    container = _container(stack)
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    grace = float(env.get("SHUTDOWN_GRACE_SECONDS", DEFAULT_GRACE))
    assert container["StopTimeout"] >= grace + 15
    assert container["StopTimeout"] <= 120  # Fargate's maximum


def test_stack_checks_the_consumer_health_on_its_metrics_port(stack: dict[str, Any]) -> None:
    """ECS asks /healthz on the port `metering consume` serves, which the container maps."""
    container = _container(stack)
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    port = ConsumerSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)}).metrics_port
    assert f"127.0.0.1:{port}/healthz" in " ".join(container["HealthCheck"]["Command"])
    assert container["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]


def test_stack_lets_the_consumer_manage_the_kcl_tables(stack: dict[str, Any]) -> None:
    """The task role covers the three KCL tables (consumer/leases.py) and the lease table's index."""
    application = ConsumerSettings.from_env({"ENVIRONMENT": "test"}).application_name
    statements = _resource(stack, "TaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {statement["Sid"]: statement for statement in statements}
    tables = {_named(arn).rsplit("table/", 1)[1] for arn in by_sid["KclLeasesAndCoordination"]["Resource"]}
    assert tables == {spec["TableName"] for spec in leases.kcl_table_specs(application)}
    assert _named(by_sid["KclLeaseOwnerIndex"]["Resource"]).endswith(f"table/{application}/index/*")


def test_stack_keeps_the_desired_count_during_deployments(stack: dict[str, Any]) -> None:
    """Two tasks by default (and at least); a deployment starts new tasks before it stops old ones."""
    assert stack["Parameters"]["MinTasks"]["Default"] == 2
    assert _resource(stack, "Service")["DesiredCount"] == {"Ref": "MinTasks"}
    deployment = _resource(stack, "Service")["DeploymentConfiguration"]
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)
