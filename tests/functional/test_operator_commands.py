"""The operator commands end to end against moto in-process: provision, simulate, usage, config errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import orjson
import pytest
from moto import mock_aws
from rich.console import Console

from consumer.core.access_logs import decode_access_log_line, is_gzip
from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.settings import ConsumerSettings
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.testing import access_log_line, event
from contract.table import BUCKET_INDEX, LEGACY_BUCKET_INDEX, analytics_table_spec, bucket_index
from metering.cli import main
from metering.commands.analytics import latency_view
from metering.commands.usage import parse_window, render, show_usage
from tests.records import usage_events


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsumerSettings]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ENVIRONMENT": "ft",
        "COLUMNS": "200",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield ConsumerSettings.from_env({"ENVIRONMENT": "ft"})


def _run(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    code = exited.value.code
    return code if isinstance(code, int) else 1


def _stream_records(stream: str) -> list[bytes]:
    """The usage records on the stream (the access-log subscription's gzip records left out)."""
    kinesis = boto3.client("kinesis")
    data: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        data += [r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]]
    return [record for record in data if not is_gzip(record)]


def test_provision_is_idempotent(aws: ConsumerSettings) -> None:
    """Provisioning twice succeeds and leaves a 2-shard, 7-day, encrypted stream and a TTL table."""
    assert _run("provision") == 0
    assert _run("provision") == 0
    summary = boto3.client("kinesis").describe_stream_summary(StreamName=aws.stream_name)
    details = summary["StreamDescriptionSummary"]
    assert (details["OpenShardCount"], details["RetentionPeriodHours"]) == (2, 168)
    assert details["EncryptionType"] == "KMS"
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=aws.analytics_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiresAt"


def test_provision_adds_the_keys_only_index_to_a_table_from_before(
    aws: ConsumerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table an earlier version provisioned (only `by-bucket`, projecting ALL) gets
    `by-bucket-keys`; its old index stays (readers fall back to it; a deploy removes it)."""
    spec = analytics_table_spec(aws.analytics_table)
    boto3.client("dynamodb").create_table(
        **{**spec, "GlobalSecondaryIndexes": [bucket_index(LEGACY_BUCKET_INDEX, "ALL")]}
    )
    assert _run("provision") == 0
    assert f"index {BUCKET_INDEX} added" in capsys.readouterr().out
    table = boto3.client("dynamodb").describe_table(TableName=aws.analytics_table)["Table"]
    indexes = {i["IndexName"]: i["Projection"]["ProjectionType"] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {BUCKET_INDEX: "KEYS_ONLY", LEGACY_BUCKET_INDEX: "ALL"}
    assert _run("provision") == 0
    assert "added" not in capsys.readouterr().out


def test_simulate_emits_contract_events_the_consumer_accepts(aws: ConsumerSettings) -> None:
    """Every event the real authorizer emits during a simulation decodes as a valid v1 event."""
    assert _run("provision") == 0
    assert _run("simulate", "--rate", "400", "--duration", "0.5", "--users", "5", "--seed", "3") == 0
    events = [e for data in _stream_records(aws.stream_name) for e in usage_events(data, datetime.now(UTC))]
    assert len(events) == 200
    assert {e.event_type.value for e in events} >= {"API_CALL", "API_AUTH_FAILED"}
    assert all(e.user_email for e in events if e.event_type.value == "API_CALL")


def test_simulate_sends_with_keys_made_by_metering_keys(
    aws: ConsumerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret printed by `metering keys create` drives `metering simulate --key` and is kept active."""
    assert _run("provision") == 0
    assert _run("keys", "create", "--email", "ops@example.com", "--plan", "pro") == 0
    printed = capsys.readouterr().out.splitlines()
    secret = next(line.split()[1] for line in printed if line.startswith("secret:"))
    assert _run("simulate", "--rate", "200", "--duration", "0.5", "--users", "0", "--key", secret) == 0
    events = [e for data in _stream_records(aws.stream_name) for e in usage_events(data, datetime.now(UTC))]
    assert {e.user_email for e in events if e.event_type.value == "API_CALL"} == {"ops@example.com"}
    assert _run("keys", "list") == 0
    assert "active" in capsys.readouterr().out
    assert _run("simulate", "--users", "0", "--duration", "0.1") == 2


def test_usage_shows_global_and_per_user_minutes(aws: ConsumerSettings) -> None:
    """`metering usage` reads back what a flush wrote: global minutes and the top users."""
    assert _run("provision") == 0
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    aggregate = Aggregate()
    for email in ["ada@example.com", "ada@example.com", "bob@example.com"]:
        aggregate.add(decode_event(_event(email, now), now), _event(email, now))
    sink = DynamoDBSink(boto3.client("dynamodb"), aws.analytics_table, aws.application_name)
    sink.claim("shardId-0")
    sink.write(Batch(FlushRange("shardId-0", None, Position("5").key()), aggregate, 3))
    console = Console(width=200, record=True)
    console.print(render(boto3.client("dynamodb"), aws.analytics_table, None, parse_window("5m"), now))
    text = console.export_text()
    assert "ada@example.com" in text and "bob@example.com" in text
    assert f"{now:%Y-%m-%dT%H:%M}" in text


def test_the_demo_view_shows_usage_and_latency_and_errors_per_endpoint(
    aws: ConsumerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `metering demo` refreshes: the minutes of usage, then the endpoints' latency and errors."""
    assert _run("provision") == 0
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    aggregate = Aggregate()
    aggregate.add(decode_event(_event("ada@example.com", now), now), _event("ada@example.com", now))
    for status in ("200", "200", "503"):
        line = access_log_line(now, status=status, httpMethod="POST", resourcePath="/orders")
        aggregate.add_response(decode_access_log_line(orjson.dumps(line), now))
    sink = DynamoDBSink(boto3.client("dynamodb"), aws.analytics_table, aws.application_name)
    sink.claim("shardId-0")
    sink.write(Batch(FlushRange("shardId-0", None, Position("4").key()), aggregate, 4))
    show_usage(aws, user=None, last="5m", beside=latency_view(aws, timedelta(minutes=10)))
    text = capsys.readouterr().out
    assert "ada@example.com" in text
    assert "Latency and errors per endpoint" in text and "POST /orders" in text
    assert "33.3" in text  # one 5xx of three responses


def test_bad_configuration_stops_with_the_variable_name(
    aws: ConsumerSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad setting stops start-up with a message naming the variable."""
    monkeypatch.setenv("FLUSH_INTERVAL_SECONDS", "soon")
    assert _run("provision") == 1
    assert capsys.readouterr().err.startswith("metering: configuration error: FLUSH_INTERVAL_SECONDS='soon'")


def _event(email: str, at: datetime) -> bytes:
    return orjson.dumps(event(email=email, at=at))
