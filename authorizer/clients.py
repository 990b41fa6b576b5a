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

# DynamoDB answers the request, so it gets one quick retry; API Gateway waits at most 29 s, we far less.
DYNAMODB_CONFIG = Config(
    connect_timeout=0.25, read_timeout=0.5, retries={"mode": "standard", "total_max_attempts": 2}
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
