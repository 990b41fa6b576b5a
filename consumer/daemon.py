"""Running the KCL MultiLangDaemon: render its properties, start the JVM, forward signals.

The JVM stays in our process group, so killing the group kills everything. SIGTERM and SIGINT
are forwarded to the JVM as SIGTERM; its shutdown hook gives every record processor
`shutdownGraceMillis` to flush and checkpoint (the processors ignore a terminal's SIGINT and wait
for the daemon to tell them). A daemon that dies for any other reason makes `metering consume`
exit non-zero, so the container is restarted and the shards resume from their checkpoints.

A stop is bounded: a JVM still running `STOP_MARGIN_SECONDS` after the grace period (its graceful
shutdown can hang while Kinesis or DynamoDB fail) is killed with its record processors, and
`metering consume` exits 1 well before ECS's `stopTimeout`. Whatever was not checkpointed is read
again by the next owner of each shard, exactly (consumer/EXACTLY_ONCE.md).

`metering replay` runs the same daemon with property overrides (its own application, a starting
timestamp), extra environment for the record processors, and an `until` condition: once it holds,
the daemon is stopped as on SIGTERM (flush, checkpoint) and the run counts as a success.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from string import Template
from types import FrameType
from urllib.parse import urlparse

import amazon_kclpy
from prometheus_client.registry import Collector

from consumer import aws, leases, logs, metrics
from consumer.completeness import CompletenessPublisher
from consumer.settings import ConsumerSettings
from contract.environment import ConfigError
from reads import Table

PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"
JARS_DIR = Path(amazon_kclpy.__file__).resolve().parent / "jars"
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
# The KCL's Kinesis client speaks CBOR by default; JSON works with AWS and with the emulator.
JVM_OPTIONS = "-Daws.cborEnabled=false"
# After the grace period, the seconds a stopping JVM gets to exit before it is killed.
STOP_MARGIN_SECONDS = 5.0
# What the MultiLangDaemon itself calls (KCL 3.x with polling, as documented for its IAM role): our
# Python calls are derived from the code (tests/deploy/test_iam.py), the JVM's are declared here.
KCL_DAEMON_ACTIONS = frozenset(
    {
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        # the lease, coordinator-state and worker-metrics tables
        "dynamodb:CreateTable",
        "dynamodb:DescribeTable",
        "dynamodb:UpdateTable",
        "dynamodb:Scan",
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "cloudwatch:PutMetricData",
    }
)


def render_properties(
    settings: ConsumerSettings,
    template: Path = PROPERTIES_DIR / "consumer.properties",
    *,
    overrides: Mapping[str, str | None] | None = None,
) -> str:
    """The daemon's properties; `overrides` replace a key's line, add a key, or (None) drop one."""
    cloudwatch = aws.endpoint_of("cloudwatch", settings.region)
    values = {
        "EXECUTABLE": f"{sys.executable} -m consumer.kcl_child",
        "STREAM_NAME": settings.stream_name,
        "APPLICATION_NAME": settings.application_name,
        "WORKER_ID": settings.worker_id,
        "REGION": settings.region,
        "KINESIS_ENDPOINT": aws.endpoint_of("kinesis", settings.region),
        "DYNAMODB_ENDPOINT": aws.endpoint_of("dynamodb", settings.region),
        "SHUTDOWN_GRACE_MILLIS": str(int(settings.shutdown_grace_seconds * 1000)),
        "METRICS_LEVEL": "SUMMARY" if _is_aws(cloudwatch) else "NONE",
    }
    return _override(Template(template.read_text()).substitute(values), overrides or {})


def initial_position(properties: str) -> str:
    """The checkpoint sentinel the KCL gives a new lease under these properties."""
    values = dict(_entries(properties))
    if "initialPositionInStreamExtended" in values:
        return "AT_TIMESTAMP"  # epoch seconds; the KCL reads from there when it meets the sentinel
    return values.get("initialPositionInStream", "LATEST")


def _entries(properties: str) -> list[tuple[str, str]]:
    entries = []
    for line in properties.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


def _override(properties: str, overrides: Mapping[str, str | None]) -> str:
    lines, replaced = [], set()
    for line in properties.splitlines():
        entry = _entries(line)
        key = entry[0][0] if entry else None
        if key is not None and key in overrides:
            replaced.add(key)
            value = overrides[key]
            if value is not None:
                lines.append(f"{key} = {value}")
        else:
            lines.append(line)
    lines += [f"{k} = {v}" for k, v in overrides.items() if k not in replaced and v is not None]
    return "\n".join(lines) + "\n"


def java_command(java: str, properties_file: Path) -> list[str]:
    # The multilang jar bundles a logback.xml of its own, which wins over one on the classpath.
    logback = f"-Dlogback.configurationFile={PROPERTIES_DIR / 'logback.xml'}"
    classpath = f"{JARS_DIR}/*"
    return [java, logback, "-cp", classpath, DAEMON_CLASS, "--properties-file", str(properties_file)]


def run(
    settings: ConsumerSettings,
    *,
    overrides: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    until: Callable[[], bool] | None = None,
    poll_seconds: float = 0.5,
    completeness: bool = False,
) -> int:
    """Run the daemon until it exits (or `until()` holds and it stopped); returns our exit code.

    `env` is added to the daemon's environment, which its record processors inherit; with
    `completeness`, final hours' completeness is published beside it (`consumer.completeness`).
    """
    java = shutil.which("java")
    if java is None:
        raise ConfigError("java is not on PATH: install a Java 17 runtime (openjdk-17-jre-headless)")
    with tempfile.TemporaryDirectory(prefix="metering-kcl-") as workdir:
        properties = render_properties(settings, overrides=overrides)
        properties_file = Path(workdir) / "consumer.properties"
        properties_file.write_text(properties)
        _bootstrap_leases(settings, initial_position(properties))
        java_options = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {JVM_OPTIONS}"
        multiproc_dir = Path(workdir) / "prometheus"
        multiproc_dir.mkdir()
        daemon_env = os.environ | dict(env or {})
        daemon_env |= {"JAVA_TOOL_OPTIONS": java_options, metrics.MULTIPROC_ENV: str(multiproc_dir)}
        daemon = subprocess.Popen(java_command(java, properties_file), env=daemon_env)
        stop = _Stop(daemon, settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS)
        previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        server, stop_publishing = None, None
        try:
            publisher = _publisher(settings) if completeness else None
            stop_publishing = publisher.start(settings.reconcile_every_seconds) if publisher else None
            server = _serve_metrics(settings, multiproc_dir, daemon, [publisher] if publisher else [])
            code = _wait(daemon, until, poll_seconds, stop)
        finally:  # also on an error of ours: never leave the JVM running without us
            if stop_publishing is not None:
                stop_publishing()
            if server is not None:
                server.shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            _reap(daemon, timeout=settings.shutdown_grace_seconds + 10)
    if stop.requested and code in (0, 130, 143):
        return 0
    if stop.overdue():
        print(
            f"metering: the KCL daemon had not stopped {stop.bound:g} s after SIGTERM: killed it and its"
            " record processors (what they had not checkpointed is read again by the next owner)",
            file=sys.stderr,
        )
        return 1
    print(f"metering: the KCL daemon exited with code {code}", file=sys.stderr)
    return code or 1


def _reap(daemon: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop the daemon gracefully if it still runs, and kill it if it outlives `timeout`."""
    if daemon.poll() is not None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def _wait(
    daemon: subprocess.Popen[bytes], until: Callable[[], bool] | None, poll_seconds: float, stop: _Stop
) -> int:
    while True:
        try:
            return daemon.wait(poll_seconds)
        except subprocess.TimeoutExpired:
            if stop.overdue():
                _kill_with_children(daemon)
                return daemon.wait()
            if until is not None and not stop.requested and until():
                stop(signal.SIGTERM, None)  # as an operator's SIGTERM: flush, checkpoint, exit


def _kill_with_children(daemon: subprocess.Popen[bytes]) -> None:
    """SIGKILL the JVM and its record processors (they share our process group, so not killpg)."""
    for pid in [*_children(daemon.pid), daemon.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc; none elsewhere)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # `pid (comm) state ppid ...`: comm may hold spaces, so split after its closing bracket.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _publisher(settings: ConsumerSettings) -> CompletenessPublisher:
    table = Table(aws.client("dynamodb", settings.region), settings.analytics_table)
    return CompletenessPublisher(
        table,
        aws.client("cloudwatch", settings.region),
        settings.environment,
        after=timedelta(seconds=settings.reconcile_after_seconds),
    )


def _serve_metrics(
    settings: ConsumerSettings,
    multiproc_dir: Path,
    daemon: subprocess.Popen[bytes],
    collectors: Sequence[Collector],
) -> ThreadingHTTPServer | None:
    if not settings.metrics_port:
        return None
    try:
        return metrics.serve(
            settings.metrics_port,
            multiproc_dir,
            lambda: daemon.poll() is None,
            stall_seconds=settings.health_stall_seconds,
            poll_seconds=settings.health_poll_seconds,
            collectors=collectors,
        )
    except OSError as exc:
        raise ConfigError(f"METRICS_PORT={settings.metrics_port} cannot be served: {exc}") from exc


def _bootstrap_leases(settings: ConsumerSettings, initial_position: str) -> None:
    created = leases.bootstrap(
        aws.client("dynamodb", settings.region),
        aws.client("kinesis", settings.region),
        settings.application_name,
        settings.stream_name,
        settings.worker_id,
        initial_position=initial_position,
    )
    if created:
        log = logs.get("consumer.daemon")
        log.info("leases_bootstrapped", leases=created, worker_id=settings.worker_id)


class _Stop:
    """Stops the daemon with SIGTERM, once asked (a signal to us, or the `until` condition), and
    knows when the stop has taken longer than `bound` seconds."""

    def __init__(self, daemon: subprocess.Popen[bytes], bound: float) -> None:
        self._daemon = daemon
        self.bound = bound
        self.requested = False
        self._deadline: float | None = None

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.requested:
            self.requested = True
            self._deadline = time.monotonic() + self.bound
        if self._daemon.poll() is None:
            self._daemon.send_signal(signal.SIGTERM)

    def overdue(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline


def _is_aws(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
