"""Fixtures every tier may use: the embedded emulator, started once for the whole session."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from metering import emulator as local_aws


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, with the emulator's own message, when moto no longer behaves as it needs: the
    alternative is every integration test timing out in turn (issue 16)."""
    command = [sys.executable, "-m", "metering.cli", "local-aws", "--self-check"]
    check = subprocess.run(command, capture_output=True, text=True, check=False)
    if check.returncode != 0:
        lines = check.stderr.strip().splitlines() or ["metering: the emulator is broken"]
        pytest.exit(lines[-1], returncode=3)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """bin/test runs two workers (`--dist loadgroup`): each file stays on one worker, so its module
    fixtures start once, and the container tier is one group, so one engine is started."""
    for item in items:
        group = "containers" if "containers" in item.path.parts else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def emulator() -> Iterator[dict[str, str]]:
    """`metering local-aws` for the whole session: the environment that points boto3 at it."""
    port = local_aws.free_port()
    with local_aws.running(port):
        yield local_aws.local_env(port) | {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@pytest.fixture
def aws_env(emulator: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's process talks to the shared emulator (and only this test's)."""
    for name, value in emulator.items():
        monkeypatch.setenv(name, value)
    return dict(emulator)


@pytest.fixture
def stream(aws_env: dict[str, str]) -> tuple[Any, str]:
    """A fresh two-shard Kinesis stream on the shared emulator, and a client for it."""
    kinesis = boto3.client("kinesis")
    name = f"reshard-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    return kinesis, name
