"""`metering provision`: create the stream, tables, queue and topic, idempotently, wherever boto3 points.

Also the stage's access-log group and its subscription to the stream (ecs/api-gateway.yaml), which
`metering simulate` writes to: the emulator delivers them to the stream as CloudWatch Logs does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from consumer import aws
from consumer.settings import ConsumerSettings
from contract.access_logs import SUBSCRIPTION_FILTER
from contract.aws import aws_error_code
from contract.environment import access_log_group
from contract.table import EXPIRES_AT, analytics_table_spec

STREAM_SHARDS = 2
STREAM_RETENTION_HOURS = 7 * 24


def provision(settings: ConsumerSettings, report: Callable[[str], None] = print) -> None:
    kinesis = aws.client("kinesis", settings.region)
    dynamodb = aws.client("dynamodb", settings.region)
    _stream(kinesis, settings.stream_name, report)
    _access_logs(aws.client("logs", settings.region), kinesis, settings, report)
    _table(dynamodb, analytics_table_spec(settings.analytics_table), EXPIRES_AT, report)
    for spec, ttl_attribute in _authorizer_tables(settings):
        _table(dynamodb, spec, ttl_attribute, report)
    _queue(aws.client("sqs", settings.region), settings.dlq_name, report)
    if settings.alerts_topic_name is not None:
        _topic(aws.client("sns", settings.region), settings.alerts_topic_name, report)


def _topic(sns: Any, name: str, report: Callable[[str], None]) -> None:
    """The alerts topic (docs/alerts.md); creating an existing topic returns it."""
    arn = sns.create_topic(Name=name)["TopicArn"]
    report(f"topic {name}: ready ({arn})")


def _stream(kinesis: Any, name: str, report: Callable[[str], None]) -> None:
    try:
        kinesis.create_stream(
            StreamName=name, ShardCount=STREAM_SHARDS, StreamModeDetails={"StreamMode": "PROVISIONED"}
        )
        report(f"stream {name}: created ({STREAM_SHARDS} shards)")
    except ClientError as exc:
        if aws_error_code(exc) != "ResourceInUseException":
            raise
        report(f"stream {name}: exists")
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    if summary["RetentionPeriodHours"] < STREAM_RETENTION_HOURS:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=STREAM_RETENTION_HOURS)
    if summary.get("EncryptionType", "NONE") == "NONE":
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")


def _access_logs(logs: Any, kinesis: Any, settings: ConsumerSettings, report: Callable[[str], None]) -> None:
    group = access_log_group(settings.environment)
    try:
        logs.create_log_group(logGroupName=group)
        report(f"log group {group}: created")
    except ClientError as exc:
        if aws_error_code(exc) != "ResourceAlreadyExistsException":
            raise
        report(f"log group {group}: exists")
    summary = kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"]
    account = summary["StreamARN"].split(":")[4]
    # Creates or updates, so idempotent. The emulator does not check the role; in AWS the stack's
    # AccessLogSubscriptionRole stands here (like the tables, the stacks own these names there).
    logs.put_subscription_filter(
        logGroupName=group,
        filterName=SUBSCRIPTION_FILTER,
        filterPattern="",
        destinationArn=summary["StreamARN"],
        roleArn=f"arn:aws:iam::{account}:role/complical-access-logs-{settings.environment}",
    )
    report(f"subscription {SUBSCRIPTION_FILTER}: {group} -> {settings.stream_name}")


def _table(
    dynamodb: Any, spec: dict[str, Any], ttl_attribute: str | None, report: Callable[[str], None]
) -> None:
    name = spec["TableName"]
    if aws.create_table(dynamodb, spec):
        report(f"table {name}: created")
    else:
        report(f"table {name}: exists")
        _add_missing_indexes(dynamodb, spec, report)
    if ttl_attribute is None:
        return
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )


def _add_missing_indexes(dynamodb: Any, spec: dict[str, Any], report: Callable[[str], None]) -> None:
    """A table provisioned by an earlier version gets the indexes the spec now lists (the analytics
    table's keys-only `by-bucket-keys`); indexes it has beyond them are left: readers fall back to
    them, and removing one is a deploy's decision. DynamoDB adds one index per UpdateTable."""
    name = spec["TableName"]
    table = dynamodb.describe_table(TableName=name)["Table"]
    present = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
    for index in spec.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in present:
            continue
        dynamodb.update_table(
            TableName=name,
            AttributeDefinitions=spec["AttributeDefinitions"],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        report(f"table {name}: index {index['IndexName']} added")


def _queue(sqs: Any, name: str, report: Callable[[str], None]) -> None:
    # Dead letters are kept as long as SQS allows (14 days) so they can be re-driven after a fix.
    sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)})
    report(f"queue {name}: ready")


def _authorizer_tables(settings: ConsumerSettings) -> list[tuple[dict[str, Any], str | None]]:
    from authorizer import tables

    specs = tables.table_specs(settings.api_keys_table, settings.rate_limit_table)
    ttl = {
        spec["TableName"]: spec["TimeToLiveSpecification"]["AttributeName"]
        for spec in tables.ttl_specs(settings.api_keys_table, settings.rate_limit_table)
    }
    return [(spec, ttl.get(spec["TableName"])) for spec in specs]
