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


CONTAINER_TIER = "tests/containers/"


def scope_of(nodeid: str) -> str:
    """The unit bin/test's two workers share out: a test file, so its module fixtures start once;
    the whole container tier is one, so one engine is started."""
    path = nodeid.split("::", 1)[0]
    return CONTAINER_TIER if path.startswith(CONTAINER_TIER) else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling with our scopes. (Its `xdist_group` marks do not reach the scheduler
    under pytest 9.2: xdist writes them into `Item._nodeid`, which pytest no longer reads.)
    tests/unit/test_suite_split.py fails first if `_split_scope` moves."""
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByScope(config, log)


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
