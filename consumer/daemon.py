"""Running the KCL MultiLangDaemon: render its properties, start the JVM, forward signals.

The JVM stays in our process group, so killing the group kills everything. SIGTERM and SIGINT
are forwarded to the JVM as SIGTERM; its shutdown hook gives every record processor
`shutdownGraceMillis` to flush and checkpoint (the processors ignore a terminal's SIGINT and wait
for the daemon to tell them). A daemon that dies for any other reason makes `metering consume`
exit non-zero, so the container is restarted and the shards resume from their checkpoints.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from string import Template
from types import FrameType
from urllib.parse import urlparse

import amazon_kclpy

from consumer import aws, leases, logs
from consumer.errors import ConfigError
from consumer.settings import Settings

PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"
JARS_DIR = Path(amazon_kclpy.__file__).resolve().parent / "jars"
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
# The KCL's Kinesis client speaks CBOR by default; JSON works with AWS and with the emulator.
JVM_OPTIONS = "-Daws.cborEnabled=false"


def render_properties(settings: Settings, template: Path = PROPERTIES_DIR / "consumer.properties") -> str:
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
    return Template(template.read_text()).substitute(values)


def java_command(java: str, properties_file: Path) -> list[str]:
    # The multilang jar bundles a logback.xml of its own, which wins over one on the classpath.
    logback = f"-Dlogback.configurationFile={PROPERTIES_DIR / 'logback.xml'}"
    classpath = f"{JARS_DIR}/*"
    return [java, logback, "-cp", classpath, DAEMON_CLASS, "--properties-file", str(properties_file)]


def run(settings: Settings) -> int:
    """Run the daemon until it exits; returns our exit code."""
    java = shutil.which("java")
    if java is None:
        raise ConfigError("java is not on PATH: install a Java 17 runtime (openjdk-17-jre-headless)")
    with tempfile.TemporaryDirectory(prefix="metering-kcl-") as workdir:
        properties_file = Path(workdir) / "consumer.properties"
        properties_file.write_text(render_properties(settings))
        _bootstrap_leases(settings)
        env = os.environ | {"JAVA_TOOL_OPTIONS": f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {JVM_OPTIONS}"}
        daemon = subprocess.Popen(java_command(java, properties_file), env=env)
        stopping = _forward_stop_signals(daemon)
        code = daemon.wait()
    if stopping() and code in (0, 130, 143):
        return 0
    print(f"metering consume: the KCL daemon exited with code {code}", file=sys.stderr)
    return code or 1


def _bootstrap_leases(settings: Settings) -> None:
    created = leases.bootstrap(
        aws.client("dynamodb", settings.region),
        aws.client("kinesis", settings.region),
        settings.application_name,
        settings.stream_name,
        settings.worker_id,
    )
    if created:
        log = logs.get("consumer.daemon")
        log.info("leases_bootstrapped", leases=created, worker_id=settings.worker_id)


def _forward_stop_signals(daemon: subprocess.Popen[bytes]) -> Callable[[], bool]:
    requested: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        requested.append(signum)
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return lambda: bool(requested)


def _is_aws(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
