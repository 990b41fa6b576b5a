"""boto3 clients, built in one place with explicit timeouts and botocore's standard retry mode.

Endpoints are not configured here: boto3 resolves `AWS_ENDPOINT_URL` and
`AWS_ENDPOINT_URL_<SERVICE>` itself, which is how every component finds the local emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from consumer.errors import Misconfigured, SinkUnavailable
from contract.aws import aws_error_code, is_configuration_error

# Standard mode: exponential backoff with jitter, retries throttling and transient errors.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=32,
)


# A flush's counter updates (and the metrics publisher's calls): each call gives up within ~25 s
# (3 attempts of 2 s connect + 5 s read, plus backoff), so a flush's outage ride-out
# (`WRITE_RETRY_SECONDS`) stays the bound that counts.
FLUSH_CONFIG = _CONFIG.merge(
    Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """The one place where a failed AWS call becomes an error of ours.

    A missing resource or permission is `Misconfigured` (not worth retrying); anything else,
    throttling, timeouts, 5xx, a refused connection, is `SinkUnavailable` (retried in bounds).
    Callers handle the codes they expect (a refused condition) inside the block.
    """
    try:
        yield
    except ClientError as exc:
        error = Misconfigured if is_configuration_error(exc) else SinkUnavailable
        raise error(f"{what}: {aws_error_code(exc) or exc}") from exc
    except BotoCoreError as exc:
        raise SinkUnavailable(f"{what}: {exc}") from exc


def client(service: str, region: str, config: Config = _CONFIG) -> Any:
    return boto3.session.Session().client(service, region_name=region, config=config)  # type: ignore[call-overload]


def create_table(dynamodb: Any, spec: dict[str, Any]) -> bool:
    """Create a table unless it exists, then wait until it is usable; True if this call created it."""
    try:
        dynamodb.create_table(**spec)
        created = True
    except ClientError as exc:
        if aws_error_code(exc) != "ResourceInUseException":
            raise
        created = False
    dynamodb.get_waiter("table_exists").wait(
        TableName=spec["TableName"], WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    return created


def holds_items(dynamodb: Any, table: str) -> bool:
    return bool(dynamodb.scan(TableName=table, Limit=1, Select="COUNT")["Count"])


def open_shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """The stream's shards still open (no ending sequence number): those a reader starts from."""
    shards: list[dict[str, Any]] = []
    for page in kinesis.get_paginator("list_shards").paginate(StreamName=stream):
        shards.extend(page["Shards"])
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def endpoint_of(service: str, region: str) -> str:
    """The endpoint boto3 resolved for a service (the KCL daemon is pointed at the same one)."""
    return str(client(service, region).meta.endpoint_url)
