"""Each role allows exactly the AWS actions its code calls: derived from the code, not listed by hand.

The authorizer's role against what `lambda_handler` can reach, the usage endpoint's against what
`authorizer.usage_api.lambda_handler` can reach; the access-log subscription's role against what
CloudWatch Logs calls to deliver to Kinesis; the consumer's task role against
what `metering consume` (the daemon's parent and every record processor) can reach, plus the
actions the KCL daemon itself needs (`consumer.daemon.KCL_DAEMON_ACTIONS`). No action is a wildcard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from consumer.daemon import KCL_DAEMON_ACTIONS
from contract.table import USER_PREFIX
from tests.deploy.aws_calls import iam_actions

ROOT = Path(__file__).resolve().parents[2]
# Lambda writes the function's logs with the function's role.
LAMBDA_RUNTIME_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# A subscription delivers to Kinesis with PutRecord only; the stream's AWS managed key needs no KMS grant.
SUBSCRIPTION_ACTIONS = {"kinesis:PutRecord"}


def _resources(template: str) -> dict[str, Any]:
    resources: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / template))["Resources"]
    return resources


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """A policy's statements; one under `!If [condition, statement, AWS::NoValue]` counts (the most
    a role may be allowed)."""
    statements = []
    for listed in policy["PolicyDocument"]["Statement"]:
        statement = listed
        if "Fn::If" in listed:
            _condition, statement, otherwise = listed["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
        statements.append(statement)
    return statements


def _allowed(template: str, role: str) -> set[str]:
    actions: set[str] = set()
    for policy in _resources(template)[role]["Properties"].get("Policies", []):
        for statement in _statements(policy):
            assert statement["Effect"] == "Allow"
            listed = statement["Action"]
            actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def test_the_authorizer_role_allows_exactly_what_the_handler_calls() -> None:
    calls = iam_actions(
        ["authorizer", "contract", "reads"], ["authorizer.handler:lambda_handler"], ["dynamodb", "kinesis"]
    )
    assert _allowed("api-gateway.yaml", "AuthorizerRole") == calls | LAMBDA_RUNTIME_ACTIONS
    assert "AWSLambdaBasicExecutionRole" not in str(_resources("api-gateway.yaml")["AuthorizerRole"])


def test_the_usage_api_role_allows_exactly_what_its_handler_calls_on_user_items_only() -> None:
    calls = iam_actions(
        ["authorizer", "contract", "reads"], ["authorizer.usage_api:lambda_handler"], ["dynamodb", "kinesis"]
    )
    assert _allowed("api-gateway.yaml", "UsageApiRole") == calls | LAMBDA_RUNTIME_ACTIONS
    statements = _resources("api-gateway.yaml")["UsageApiRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    reads = next(s for s in statements["Statement"] if "dynamodb:Query" in s["Action"])
    assert "/index/" not in str(reads["Resource"])  # `usage_summary` queries the table by key only
    assert reads["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{USER_PREFIX}*"]}}


def test_the_access_log_subscription_role_only_puts_records_on_the_usage_stream() -> None:
    role = _resources("api-gateway.yaml")["AccessLogSubscriptionRole"]
    assert _allowed("api-gateway.yaml", "AccessLogSubscriptionRole") == SUBSCRIPTION_ACTIONS
    (statement,) = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Ref": "UsageStreamArn"}
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "logs.amazonaws.com"}
    assert "aws:SourceArn" in trust["Condition"]["StringLike"]


def test_the_consumer_task_role_allows_exactly_what_metering_consume_calls() -> None:
    calls = iam_actions(
        ["consumer", "contract", "reads"],
        ["consumer.kcl_child:main", "consumer.daemon:run"],
        ["dynamodb", "kinesis", "sqs", "cloudwatch", "sns", "sts"],
    )
    assert _allowed("consumer.yaml", "TaskRole") == calls | KCL_DAEMON_ACTIONS


@pytest.mark.parametrize("template", sorted(p.name for p in (ROOT / "ecs").glob("*.yaml")))
def test_no_statement_allows_a_wildcard_action(template: str) -> None:
    for name, resource in _resources(template).items():
        if resource["Type"] == "AWS::IAM::Role":
            assert not any("*" in action for action in _allowed(template, name)), name
