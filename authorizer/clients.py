"""boto3 clients with the timeouts the request path can afford.

Endpoints come from boto3's own resolution (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_KINESIS`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

# One attempt, short timeouts: botocore's retry backoff (up to 1 s) could push a request past the
# Lambda timeout, and most failed calls already have their answer (the rate limit fails open;
# last-used is advisory); the key read retries at once (authorizer/service.py). A call takes
# single-digit ms in-region; 0.5 s is a stall, not a slow answer.
DYNAMODB_CONNECT_TIMEOUT_SECONDS = 0.2
DYNAMODB_READ_TIMEOUT_SECONDS = 0.5
DYNAMODB_CALL_LIMIT_SECONDS = DYNAMODB_CONNECT_TIMEOUT_SECONDS + DYNAMODB_READ_TIMEOUT_SECONDS
DYNAMODB_CONFIG = Config(
    connect_timeout=DYNAMODB_CONNECT_TIMEOUT_SECONDS,
    read_timeout=DYNAMODB_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": 1},
)
# Kinesis is fire and forget: one attempt, and the short timeouts of the settings
# (KINESIS_CONNECT_TIMEOUT_SECONDS, KINESIS_READ_TIMEOUT_SECONDS), so a dead endpoint only costs the sender.
KINESIS_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def dynamodb_client(endpoint_url: str | None = None) -> DynamoDBClient:
    return boto3.client("dynamodb", config=DYNAMODB_CONFIG, endpoint_url=endpoint_url)


def kinesis_client(
    *, connect_timeout: float, read_timeout: float, endpoint_url: str | None = None
) -> KinesisClient:
    config = KINESIS_RETRIES.merge(Config(connect_timeout=connect_timeout, read_timeout=read_timeout))
    return boto3.client("kinesis", config=config, endpoint_url=endpoint_url)
