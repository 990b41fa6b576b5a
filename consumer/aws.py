"""boto3 clients, built in one place with explicit timeouts and botocore's standard retry mode.

Endpoints are not configured here: boto3 resolves `AWS_ENDPOINT_URL` and
`AWS_ENDPOINT_URL_<SERVICE>` itself, which is how every component finds the local emulator.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# Standard mode: exponential backoff with jitter, retries throttling and transient errors.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=32,
)


def client(service: str, region: str) -> Any:
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)  # type: ignore[call-overload]


def endpoint_of(service: str, region: str) -> str:
    """The endpoint boto3 resolved for a service (the KCL daemon is pointed at the same one)."""
    return str(client(service, region).meta.endpoint_url)
