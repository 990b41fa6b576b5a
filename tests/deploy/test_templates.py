"""Deployment files checked with the tools a user would run on them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

from authorizer.tables import table_specs, ttl_specs

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "ecs").glob("*.yaml"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cloudformation_template_passes_cfn_lint(template: Path) -> None:
    """Every CloudFormation template under ecs/ passes cfn-lint."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_authorizer_stack_tables_match_the_tables_the_code_creates() -> None:
    """The keys and rate-limit tables in ecs/api-gateway.yaml are those `metering provision` creates."""
    resources = cfn_yaml.load(str(ROOT / "ecs" / "api-gateway.yaml"))["Resources"]
    stack = {
        r["Properties"]["TableName"]["Fn::Sub"].replace("${Environment}", "e"): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::DynamoDB::Table"
    }
    specs = table_specs("complical-api-keys-e", "complical-rate-limits-e")
    assert set(stack) == {spec["TableName"] for spec in specs}
    for spec in specs:
        table = stack[spec["TableName"]]
        assert table["KeySchema"] == spec["KeySchema"]
        assert table["AttributeDefinitions"] == spec["AttributeDefinitions"]
        assert table["BillingMode"] == spec["BillingMode"]
    for ttl in ttl_specs("complical-api-keys-e", "complical-rate-limits-e"):
        stack_ttl = stack[ttl["TableName"]]["TimeToLiveSpecification"]
        assert stack_ttl == {
            "AttributeName": ttl["TimeToLiveSpecification"]["AttributeName"],
            "Enabled": True,
        }


def test_the_authorizer_reserves_concurrency_enough_for_the_stage() -> None:
    """The authorizer has reserved concurrency (CKV_AWS_115), a parameter whose default carries the
    stage's default rate at 100 ms per call; 0 reserves none rather than throttling every request."""
    template = cfn_yaml.load(str(ROOT / "ecs" / "api-gateway.yaml"))
    parameters = template["Parameters"]
    reserved = parameters["AuthorizerReservedConcurrency"]
    function = template["Resources"]["AuthorizerFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == {
        "Fn::If": [
            "ReserveAuthorizerConcurrency",
            {"Ref": "AuthorizerReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert template["Conditions"]["ReserveAuthorizerConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AuthorizerReservedConcurrency"}, 0]}]
    }
    assert reserved["Default"] >= parameters["ThrottlingRateLimit"]["Default"] * 0.1
    assert (reserved["MinValue"], reserved["MaxValue"]) == (0, 900)  # Lambda keeps 100 of 1000 unreserved


def test_every_check_the_scanner_skips_has_its_reason() -> None:
    """.checkov.yaml (bin/test runs checkov with it): each skipped check follows a comment saying why,
    and it scans every template offline."""
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skipped = [n for n, line in enumerate(lines) if line.strip().startswith("- CKV_")]
    assert skipped, "no skipped checks found"
    for n in skipped:
        assert lines[n - 1].strip().startswith("#"), f"{lines[n].strip()} has no reason above it"
    assert "skip-download: true" in "\n".join(lines) and "  - ecs" in lines
    assert "checkov --config-file .checkov.yaml" in (ROOT / "bin" / "test").read_text()
