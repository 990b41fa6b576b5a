"""`metering deploy`'s plan against the templates it deploys, and ecs/consumer.yaml's scaling.

What moto's CloudFormation skips (autoscaling, the API stack's Rules) is checked here on the
templates; tests/functional/test_deploy.py deploys what moto supports.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from metering.cli import main
from metering.commands.deploy import (
    LiveStream,
    Options,
    Param,
    api_parameters,
    consumer_parameters,
    monitoring_parameters,
    parameter_list,
)
from metering.errors import CommandError

ROOT = Path(__file__).resolve().parents[2]
NEW = Options(environment="test", image="img:1", vpc="vpc-1", subnets=("subnet-a", "subnet-b"))
CONSUMER_OUTPUTS = {
    "StreamName": "s",
    "StreamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
    "AnalyticsTableName": "t",
    "DeadLetterQueueName": "q",
    "ClusterName": "c",
    "ServiceName": "svc",
}


def _template(name: str) -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / name))
    return template


def _values(parameters: dict[str, Param]) -> dict[str, str | None]:
    return {name: p.value for name, p in parameters.items()}


# -- the wiring: every parameter deploy sets exists, and every output it reads is produced -------


def test_every_parameter_deploy_sets_is_declared_and_every_output_it_reads_is_produced() -> None:
    consumer, api, monitoring = (
        _template(n) for n in ("consumer.yaml", "api-gateway.yaml", "monitoring.yaml")
    )
    assert set(consumer_parameters(NEW, {}, None)) <= set(consumer["Parameters"])
    assert set(api_parameters(NEW, "b", "k", CONSUMER_OUTPUTS)) <= set(api["Parameters"])
    planned = monitoring_parameters(NEW, CONSUMER_OUTPUTS, {"AuthorizerFunctionName": "f"})
    assert set(planned) <= set(monitoring["Parameters"])
    assert set(CONSUMER_OUTPUTS) <= set(consumer["Outputs"])
    assert "AuthorizerFunctionName" in api["Outputs"]


def test_the_consumer_stacks_outputs_reach_the_api_and_monitoring_stacks() -> None:
    api = _values(api_parameters(NEW, "bucket", "authorizer/abc.zip", CONSUMER_OUTPUTS))
    assert (api["UsageStreamArn"], api["UsageStreamName"], api["AnalyticsTableName"]) == (
        CONSUMER_OUTPUTS["StreamArn"],
        "s",
        "t",
    )
    assert (api["EnableKinesisAnalytics"], api["CodeKey"]) == ("true", "authorizer/abc.zip")
    monitoring = _values(monitoring_parameters(NEW, CONSUMER_OUTPUTS, {"AuthorizerFunctionName": "f"}))
    assert monitoring | {"AlarmEmail": None} == {
        "Environment": "test",
        "StreamName": "s",
        "DeadLetterQueueName": "q",
        "ClusterName": "c",
        "ServiceName": "svc",
        "AuthorizerFunctionName": "f",
        "AlarmEmail": None,
    }
    with pytest.raises(CommandError, match="has no output AuthorizerFunctionName"):
        monitoring_parameters(NEW, CONSUMER_OUTPUTS, {})


def test_without_analytics_the_api_stack_gets_no_stream_and_no_table() -> None:
    off = Options(environment="test", analytics=False)
    api = _values(api_parameters(off, "bucket", "k", None))
    assert api["EnableKinesisAnalytics"] == "false"
    assert (api["UsageStreamArn"], api["UsageStreamName"], api["AnalyticsTableName"]) == ("", "", "")


def test_the_api_stack_accepts_no_stream_only_with_the_analytics_off() -> None:
    """Empty outputs pass the parameters' patterns; a Rule refuses them with the analytics on."""
    api = _template("api-gateway.yaml")
    for name in ("UsageStreamArn", "UsageStreamName", "AnalyticsTableName"):
        assert api["Parameters"][name]["AllowedPattern"].startswith("^$|")
    (rule,) = api["Rules"].values()
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableKinesisAnalytics"}, "true"]}
    asserted = {a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for a in rule["Assertions"]}
    assert asserted == {"UsageStreamArn", "UsageStreamName", "AnalyticsTableName"}
    variables = api["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["USAGE_STREAM_NAME"] == {"Ref": "UsageStreamName"}  # an output, not a convention


def test_parameters_not_set_keep_their_previous_values() -> None:
    """Left out, a parameter would take the template's default and undo an earlier setting."""
    planned = {"Image": Param("img:2", "--image"), "CpuArchitecture": Param(None, "--cpu-architecture")}
    declared = ["Image", "CpuArchitecture", "LogLevel", "RouteTemplates"]
    listed = parameter_list(
        planned, declared, previous={"Image": "img:1", "CpuArchitecture": "ARM64", "LogLevel": "DEBUG"}
    )
    assert listed == [
        {"ParameterKey": "Image", "ParameterValue": "img:2"},
        {"ParameterKey": "CpuArchitecture", "UsePreviousValue": True},
        {"ParameterKey": "LogLevel", "UsePreviousValue": True},
    ]  # RouteTemplates: new in the template, so its default


# -- the consumer stack's stream and task bounds --------------------------------------------------


def test_a_new_stack_needs_image_and_network() -> None:
    for missing, flag in (("image", "--image"), ("vpc", "--vpc"), ("subnets", "--subnets")):
        options = Options(**{**NEW.__dict__, missing: None if missing != "subnets" else ()})
        with pytest.raises(CommandError, match=f"{flag} is needed to create the consumer stack"):
            consumer_parameters(options, {}, None)


def test_a_new_provisioned_stream_bounds_the_tasks_by_its_shards() -> None:
    assert _values(consumer_parameters(NEW, {}, None)) | {"Image": None} == {
        "Environment": "test",
        "Image": None,
        "VpcId": "vpc-1",
        "SubnetIds": "subnet-a,subnet-b",
        "StreamMode": "PROVISIONED",
        "ShardCount": "2",
        "MinTasks": "2",
        "MaxTasks": "2",
        "CpuArchitecture": None,
        "KeepLegacyBucketIndex": "false",
    }
    four = _values(consumer_parameters(Options(**{**NEW.__dict__, "shards": 4}), {}, None))
    assert (four["ShardCount"], four["MaxTasks"]) == ("4", "4")
    with pytest.raises(CommandError, match="more than the stream's 4 shards"):
        consumer_parameters(Options(**{**NEW.__dict__, "shards": 4, "max_tasks": 5}), {}, None)
    with pytest.raises(CommandError, match="below the minimum"):
        consumer_parameters(Options(**{**NEW.__dict__, "min_tasks": 3, "max_tasks": 2}), {}, None)


KEPT = {"KeepLegacyBucketIndex": "true"}  # a deploy of this stack kept the old index


@pytest.mark.parametrize(
    ("indexes", "previous", "keep"),
    [
        (None, {}, "false"),  # a new stack: the keys-only index alone
        ({"by-bucket-keys": "ACTIVE"}, KEPT, "false"),
        ({"by-bucket": "ACTIVE"}, {}, "true"),  # a table from before: first add the new index
        ({"by-bucket": "ACTIVE", "by-bucket-keys": "CREATING"}, KEPT, "true"),  # still backfilling
        ({"by-bucket": "ACTIVE", "by-bucket-keys": "ACTIVE"}, KEPT, "false"),  # then remove the old one
        # Both, but no deploy kept the old one (an index added by hand, an update rolled back): keep
        # it, so that this update changes no index and the next removes it.
        ({"by-bucket": "ACTIVE", "by-bucket-keys": "ACTIVE"}, {}, "true"),
    ],
)
def test_a_table_from_before_the_keys_only_index_moves_in_two_deploys(
    indexes: dict[str, str] | None, previous: dict[str, str], keep: str
) -> None:
    """CloudFormation adds or removes one index per update: each deploy takes the step the table
    is ready for."""
    planned = consumer_parameters(NEW, previous, None, indexes)["KeepLegacyBucketIndex"]
    assert planned.value == keep
    if keep == "true":
        assert "deploy again" in planned.source


def test_one_shard_keeps_a_standby_task() -> None:
    """MinTasks above the shards: the second task idles until the first stops (10 s failover)."""
    one = _values(consumer_parameters(Options(**{**NEW.__dict__, "shards": 1}), {}, None))
    assert (one["MinTasks"], one["MaxTasks"]) == ("2", "2")


def test_an_on_demand_stream_takes_no_shard_count_and_bounds_the_tasks_by_its_open_shards() -> None:
    on_demand = Options(**{**NEW.__dict__, "stream_mode": "ON_DEMAND"})
    new = _values(consumer_parameters(on_demand, {}, None))
    assert (new["StreamMode"], new["ShardCount"], new["MaxTasks"]) == ("ON_DEMAND", None, "4")
    grown = _values(consumer_parameters(on_demand, {"StreamMode": "ON_DEMAND"}, LiveStream("ON_DEMAND", 12)))
    assert grown["MaxTasks"] == "12"
    assert (
        _values(consumer_parameters(Options(**{**on_demand.__dict__, "max_tasks": 20}), {}, None))["MaxTasks"]
        == "20"
    )
    with pytest.raises(CommandError, match="--shards applies to provisioned streams"):
        consumer_parameters(Options(**{**on_demand.__dict__, "shards": 4}), {}, None)


def test_an_existing_stream_keeps_its_shards_and_reshard_changes_them() -> None:
    previous = {
        "Image": "img:1",
        "VpcId": "v",
        "SubnetIds": "s",
        "StreamMode": "PROVISIONED",
        "ShardCount": "2",
    }
    resharded = LiveStream("PROVISIONED", 4)
    kept = consumer_parameters(Options(environment="test"), previous, resharded)
    assert kept["ShardCount"].value is None  # UsePreviousValue: CloudFormation never resizes it back
    assert kept["MaxTasks"].value == "4"  # one task per open shard, now four
    assert (kept["Image"].value, kept["VpcId"].value) == (None, None)  # kept too
    with pytest.raises(CommandError, match="metering reshard --shards 8"):
        consumer_parameters(Options(environment="test", shards=8), previous, resharded)
    same = consumer_parameters(Options(environment="test", shards=4), previous, resharded)
    assert same["ShardCount"].value is None
    # a stack from before ShardCount was a parameter: the stream's own count, so nothing changes
    older = consumer_parameters(
        Options(environment="test"), {"Image": "img:1", "VpcId": "v", "SubnetIds": "s"}, resharded
    )
    assert older["ShardCount"].value == "4"


# -- ecs/consumer.yaml: stream mode and autoscaling (moto's CloudFormation skips the latter) ---------


@pytest.fixture(scope="module")
def consumer() -> dict[str, Any]:
    return _template("consumer.yaml")


def test_the_stream_mode_decides_whether_the_stream_has_a_shard_count(consumer: dict[str, Any]) -> None:
    stream = consumer["Resources"]["UsageStream"]["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}
    assert consumer["Parameters"]["StreamMode"]["AllowedValues"] == ["PROVISIONED", "ON_DEMAND"]
    assert consumer["Conditions"]["Provisioned"] == {"Fn::Equals": [{"Ref": "StreamMode"}, "PROVISIONED"]}
    assert stream["ShardCount"] == {"Fn::If": ["Provisioned", {"Ref": "ShardCount"}, {"Ref": "AWS::NoValue"}]}


def test_the_service_scales_between_min_and_max_tasks_on_cpu(consumer: dict[str, Any]) -> None:
    resources = consumer["Resources"]
    target = resources["ScalableTarget"]["Properties"]
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinTasks"}, {"Ref": "MaxTasks"})
    resource_id = target["ResourceId"]["Fn::Sub"]
    assert resource_id[0] == "service/${EcsCluster}/${EcsService}"
    assert resource_id[1]["EcsService"] == {"Fn::GetAtt": ["Service", "Name"]}
    assert resources["Service"]["Properties"]["DesiredCount"] == {"Ref": "MinTasks"}
    policy = resources["CpuScalingPolicy"]["Properties"]
    assert policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    assert tracking["TargetValue"] == {"Ref": "ScalingCpuPercent"}


def test_scale_in_is_gentler_than_a_task_handing_over_its_leases(consumer: dict[str, Any]) -> None:
    """A task that leaves flushes and checkpoints (within stopTimeout), then its leases move (10 s):
    scale-in waits many times that between steps; scale-out does not wait as long."""
    tracking = consumer["Resources"]["CpuScalingPolicy"]["Properties"][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    (container,) = consumer["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    handover = container["StopTimeout"] + 10
    assert tracking["ScaleInCooldown"] >= 5 * handover
    assert tracking["ScaleOutCooldown"] < tracking["ScaleInCooldown"]
    assert not tracking.get("DisableScaleIn", False)


# -- the command line -----------------------------------------------------------------------------


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return int(exit_.value.code or 0)


def test_without_a_terminal_deploy_refuses_unless_told_yes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is read or changed: the refusal comes before any AWS call."""
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert _exit_code(["deploy", "--environment", "prod", "--code-bucket", "b"]) == 2
    assert "pass --yes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--environment", "Prod_1"], "--environment"),
        (["--environment", "prod", "--parameter", "LogLevel=DEBUG"], "STACK.NAME=VALUE"),
        (["--environment", "prod", "--parameter", "db.LogLevel=DEBUG"], "STACK.NAME=VALUE"),
        (["--environment", "prod", "--shards", "0"], "--shards must be at least 1"),
    ],
)
def test_bad_command_lines_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["deploy", *argv, "--yes"]) == 2
    assert message in capsys.readouterr().err
