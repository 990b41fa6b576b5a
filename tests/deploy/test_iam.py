"""Each role allows exactly the AWS actions its code calls: derived from the code, not listed by hand.

The authorizer's role against what `lambda_handler` can reach; the consumer's task role against
what `metering consume` (the daemon's parent and every record processor) can reach, plus the
actions the KCL daemon itself needs (`consumer.daemon.KCL_DAEMON_ACTIONS`). No action is a wildcard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from consumer.daemon import KCL_DAEMON_ACTIONS
from tests.deploy.aws_calls import iam_actions

ROOT = Path(__file__).resolve().parents[2]
# Lambda writes the function's logs with the function's role.
LAMBDA_RUNTIME_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def _resources(template: str) -> dict[str, Any]:
    resources: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / template))["Resources"]
    return resources


def _allowed(template: str, role: str) -> set[str]:
    actions: set[str] = set()
    for policy in _resources(template)[role]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            listed = statement["Action"]
            actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def test_the_authorizer_role_allows_exactly_what_the_handler_calls() -> None:
    calls = iam_actions(
        ["authorizer", "contract"], ["authorizer.handler:lambda_handler"], ["dynamodb", "kinesis"]
    )
    assert _allowed("api-gateway.yaml", "AuthorizerRole") == calls | LAMBDA_RUNTIME_ACTIONS
    assert "AWSLambdaBasicExecutionRole" not in str(_resources("api-gateway.yaml")["AuthorizerRole"])


def test_the_consumer_task_role_allows_exactly_what_metering_consume_calls() -> None:
    calls = iam_actions(
        ["consumer", "contract"],
        ["consumer.kcl_child:main", "consumer.daemon:run"],
        ["dynamodb", "kinesis", "sqs", "cloudwatch"],
    )
    assert _allowed("consumer.yaml", "TaskRole") == calls | KCL_DAEMON_ACTIONS


@pytest.mark.parametrize("template", sorted(p.name for p in (ROOT / "ecs").glob("*.yaml")))
def test_no_statement_allows_a_wildcard_action(template: str) -> None:
    for name, resource in _resources(template).items():
        if resource["Type"] == "AWS::IAM::Role":
            assert not any("*" in action for action in _allowed(template, name)), name
