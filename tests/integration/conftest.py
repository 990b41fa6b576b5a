"""Fixtures of the integration tier: the embedded emulator, a provisioned stack, the real consumer."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from consumer.settings import ConsumerSettings
from metering.commands.provision import provision


@pytest.fixture
def stack(aws_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """A freshly provisioned stream, table and queue with names unique to the test; every consumer
    the test started is killed when it ends, passed or failed."""
    env = aws_env | {
        "ENVIRONMENT": f"it-{uuid.uuid4().hex[:8]}",
        "FLUSH_INTERVAL_SECONDS": "1",
        "METRICS_PORT": "0",  # several consumers share this machine; test_metrics picks a free port
    }
    settings = ConsumerSettings.from_env(env)
    provision(settings, report=lambda _line: None)
    with Stack(settings, env, tmp_path) as stack:
        yield stack


class Stack:
    def __init__(self, settings: ConsumerSettings, env: dict[str, str], workdir: Path) -> None:
        self.settings = settings
        self.env = env
        self.workdir = workdir
        self.kinesis: Any = boto3.client("kinesis", region_name="us-east-1")
        self.dynamodb: Any = boto3.client("dynamodb", region_name="us-east-1")
        self.cloudwatch: Any = boto3.client("cloudwatch", region_name="us-east-1")
        self._consumers: list[Consumer] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Kill every consumer still running: a failed test must not leave JVMs loading the machine."""
        for consumer in self._consumers:
            consumer.kill_hard()

    def start_consumer(self, name: str = "consumer", **env: str) -> Consumer:
        """`metering consume` with this stack's settings, plus `env` (fault points, worker ids)."""
        consumer = Consumer(self.env | env, self.workdir / f"{name}-{time.monotonic_ns()}.log")
        self._consumers.append(consumer)
        return consumer

    def leases(self) -> list[dict[str, Any]]:
        try:
            reply = self.dynamodb.scan(TableName=self.settings.application_name, ConsistentRead=True)
        except self.dynamodb.exceptions.ResourceNotFoundException:
            return []  # the consumer has not created its lease table yet
        return list(reply["Items"])

    def intents(self) -> dict[str, str]:
        items = self.dynamodb.query(
            TableName=self.settings.analytics_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"FLUSH#{self.settings.application_name}"}},
            ConsistentRead=True,
        )["Items"]
        return {i["sk"]["S"].removeprefix("SHARD#"): i["end"]["S"] for i in items if "end" in i}

    def table_items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.dynamodb.get_paginator("scan").paginate(
            TableName=self.settings.analytics_table, ConsistentRead=True
        ):
            items.extend(page["Items"])
        return items

    def checkpoints(self) -> dict[str, str]:
        return {i["leaseKey"]["S"]: i.get("checkpoint", {}).get("S", "") for i in self.leases()}


class Consumer:
    """`metering consume` as a user runs it, in its own process group so it can be killed whole."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "metering.cli", "consume"],
            env=os.environ | env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_hard(self) -> None:
        """kill -9 of the whole process group: the CLI, the JVM and every record processor."""
        with contextlib.suppress(ProcessLookupError):  # the group has ended already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):  # record processors may outlive the CLI
                os.killpg(self.process.pid, signal.SIGKILL)
            self._log.close()
        return code

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
