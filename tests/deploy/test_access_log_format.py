"""The stage's access-log format, the contract's and the consumer's decoder cannot drift apart.

The template's `AccessLogSetting.Format` is rendered as API Gateway would (each `$context`
variable replaced by a realistic value), wrapped in the gzip CloudWatch Logs envelope a
subscription writes, and decoded by `consumer.core.access_logs.decode_log_record`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cfnlint.decode import cfn_yaml

from consumer.core.access_logs import ResponseEvent, _AccessLogLine, decode_log_record
from consumer.testing import log_envelope, subscription_record
from contract.access_logs import FIELDS, FORMAT, SUBSCRIPTION_FILTER, render
from contract.environment import access_log_group

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 17, 52, 13, 123000, tzinfo=UTC)
REQUEST_ID = "6499588b-5e44-45d7-84fa-cafc8a3b8ffd"
# What API Gateway puts in each variable for an allowed `GET /v1/usage`.
ALLOWED = {
    "$context.requestId": REQUEST_ID,
    "$context.requestTimeEpoch": str(int(NOW.timestamp() * 1000)),
    "$context.httpMethod": "GET",
    "$context.resourcePath": "/v1/usage",
    "$context.path": "/prod/v1/usage",
    "$context.stage": "prod",
    "$context.status": "200",
    "$context.responseLatency": "87",
    "$context.integrationLatency": "61",
    "$context.identity.sourceIp": "203.0.113.7",
    "$context.authorizer.userEmail": "alice@example.com",
    "$context.authorizer.apiKeyId": "key_01HZX3",
    "$context.error.responseType": "-",
}
# ... and for a request the authorizer refused: no integration ran, no caller.
REFUSED = ALLOWED | {
    "$context.resourcePath": "/{proxy+}",
    "$context.path": "/prod/items/42",
    "$context.httpMethod": "POST",
    "$context.status": "401",
    "$context.responseLatency": "23",
    "$context.integrationLatency": "-",
    "$context.authorizer.userEmail": "-",
    "$context.authorizer.apiKeyId": "-",
    "$context.error.responseType": "UNAUTHORIZED",
}


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / "api-gateway.yaml"))["Resources"]
    return resources


def _template_format() -> str:
    stage = _resources()["Stage"]["Properties"]
    fmt: str = stage["AccessLogSetting"]["Format"]
    return fmt


def _decoded(*lines: str) -> list[ResponseEvent]:
    record = decode_log_record(subscription_record(log_envelope(*lines)), NOW)
    assert not record.is_control
    events = [event for _, event in record.events]
    assert all(isinstance(event, ResponseEvent) for event in events), events
    return [event for event in events if isinstance(event, ResponseEvent)]


def test_the_template_writes_the_contract_format() -> None:
    assert json.loads(_template_format()) == json.loads(FORMAT) == dict(FIELDS)


def test_the_format_has_exactly_the_fields_the_decoder_reads() -> None:
    assert set(FIELDS) == {field.encode_name for field in msgspec.structs.fields(_AccessLogLine)}


@pytest.mark.parametrize("line_format", [_template_format(), FORMAT], ids=["template", "contract"])
def test_a_rendered_line_decodes_into_its_values(line_format: str) -> None:
    allowed, refused = _decoded(render(line_format, ALLOWED), render(line_format, REFUSED))
    assert allowed == ResponseEvent(
        request_id=REQUEST_ID,
        timestamp=NOW,
        http_method="GET",
        resource_path="/v1/usage",
        path="/v1/usage",  # the stage stripped: what routes read
        status=200,
        response_latency_ms=87,
        integration_latency_ms=61,
        source_ip="203.0.113.7",
        user_email="alice@example.com",
        api_key_id="key_01HZX3",
    )
    assert (refused.http_method, refused.resource_path, refused.path, refused.status) == (
        "POST",
        "/{proxy+}",
        "/items/42",
        401,
    )
    assert (refused.integration_latency_ms, refused.user_email, refused.api_key_id) == (None, None, None)
    assert (allowed.error_type, refused.error_type) == (None, "UNAUTHORIZED")


def test_a_variable_without_a_value_is_a_drift_not_a_line() -> None:
    with pytest.raises(KeyError):
        render(FORMAT, {name: value for name, value in ALLOWED.items() if name != "$context.status"})


def test_the_log_group_and_subscription_are_named_as_provision_names_them() -> None:
    resources = _resources()
    group = resources["AccessLogGroup"]["Properties"]["LogGroupName"]["Fn::Sub"]
    assert group == access_log_group("${Environment}")
    assert resources["AccessLogSubscription"]["Properties"]["FilterName"] == SUBSCRIPTION_FILTER
