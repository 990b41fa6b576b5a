"""`metering deploy` against the embedded emulator's CloudFormation (moto), as far as moto goes.

What moto 5.2.5's CloudFormation does not do, and how these tests handle it:

- **Outputs of change-set stacks.** moto never computes the outputs of a stack that a change set
  created or updated (its ChangeSet.apply leaves the stack's output map as the empty template's).
  `MotoCloudFormation` follows each ExecuteChangeSet with an UpdateStack of the previous template,
  which moto handles by rebuilding them; AWS computes them itself.
- **UsePreviousValue.** moto resolves it to a typed value that never equals the string it stored,
  so it updates resources whose properties did not change (the stream was resized back to the
  stack's ShardCount). `MotoCloudFormation` passes the previous values as strings instead.
- **Change sets list no parameter-driven changes, and list resources whose Condition is false**
  (MetricsScrapeIngress, DiscoveryService) as added; IAM policies made from a template are kept as
  Python's repr of the document.
- **Resource types it skips** (with a warning; every Ref to them is empty): in ecs/consumer.yaml
  AWS::ApplicationAutoScaling::ScalableTarget and ScalingPolicy, AWS::ServiceDiscovery::Service (off
  by default); in ecs/api-gateway.yaml AWS::ApiGateway::Authorizer, GatewayResponse, Stage and
  Account, AWS::Logs::SubscriptionFilter, AWS::CloudFormation::WaitConditionHandle, AWS::WAFv2::*
  (off by default); in ecs/monitoring.yaml AWS::CloudWatch::Alarm, AWS::SNS::TopicPolicy and
  AWS::SNS::Subscription. The tests assert only on resources moto creates; the autoscaling is
  checked on the template (tests/deploy/test_deploy_plan.py).
- **The monitoring stack cannot be executed**: its dashboard names the alarms' ARNs
  (`${Alarm.Arn}`), and a GetAtt of a skipped resource fails the whole stack. Its change set is
  created and reviewed (the wired parameters are asserted on it), then declined, which also tests
  that a declined change set stops the deployment and leaves no stack behind.
- Not checked by moto at all: parameter patterns, Rules (the API stack's assertions), IAM policy
  validity, KMS encryption of the stream (moto reports NONE), the ECS service reaching a steady state.
"""

from __future__ import annotations

import ast
import uuid
from typing import Any

import boto3
import pytest
from rich.console import Console

from metering.cli import main
from metering.commands import reshard
from metering.commands.deploy import Clients, Options, StackPlan, deploy, stack_name
from metering.errors import CommandError

pytestmark = pytest.mark.usefixtures("aws_env")


class MotoCloudFormation:
    """The emulator's CloudFormation client, where moto departs from AWS in what deploy relies on."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_change_set(self, **kwargs: Any) -> Any:
        """Previous values passed as the strings AWS would use.

        moto resolves UsePreviousValue to the typed value (the int 2 for a Number), compares it with
        the string it stored, sees a change, and updates every resource that names the parameter: the
        stream got UpdateShardCount(<the old ShardCount>) although no property changed.
        """
        if kwargs["ChangeSetType"] == "UPDATE":
            (stack,) = self._client.describe_stacks(StackName=kwargs["StackName"])["Stacks"]
            previous = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
            kwargs["Parameters"] = [
                {"ParameterKey": p["ParameterKey"], "ParameterValue": previous[p["ParameterKey"]]}
                if p.get("UsePreviousValue")
                else p
                for p in kwargs["Parameters"]
            ]
        return self._client.create_change_set(**kwargs)

    def execute_change_set(self, **kwargs: Any) -> Any:
        reply = self._client.execute_change_set(**kwargs)
        stack = self._client.describe_change_set(ChangeSetName=kwargs["ChangeSetName"])["StackName"]
        self._client.update_stack(StackName=stack, UsePreviousTemplate=True, Capabilities=["CAPABILITY_IAM"])
        return reply


class Reviewer:
    """Approves every change set but those of `decline`, keeping each one it was shown."""

    def __init__(self, *decline: str) -> None:
        self.decline = set(decline)
        self.seen: dict[str, dict[str, Any]] = {}

    def __call__(self, plan: StackPlan, change_set: dict[str, Any]) -> bool:
        self.seen[plan.key] = change_set
        return plan.key not in self.decline


@pytest.fixture
def clients() -> Clients:
    return Clients(
        MotoCloudFormation(boto3.client("cloudformation")),
        boto3.client("s3"),
        boto3.client("kinesis"),
        boto3.client("dynamodb"),
    )


@pytest.fixture
def options() -> Options:
    """A fresh environment, with what creating every stack needs."""
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    bucket = f"code-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return Options(
        environment=f"d{uuid.uuid4().hex[:8]}",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/complical-usage-metering:test",
        code_bucket=bucket,
        vpc=vpc,
        subnets=tuple(s["SubnetId"] for s in subnets[:2]),
        backend_url="https://backend.example.com",
    )


def _stack(name: str) -> dict[str, Any]:
    (stack,) = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {
        "parameters": {p["ParameterKey"]: p.get("ParameterValue") for p in stack["Parameters"]},
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []},
    }


def _deploy_all_but_monitoring(options: Options, clients: Clients) -> tuple[Reviewer, str]:
    """Deploy, declining the monitoring stack's change set (moto cannot execute it); the output shown."""
    reviewer = Reviewer("monitoring")
    console = Console(record=True, width=200)
    with pytest.raises(CommandError, match="not executed"):
        deploy(options, clients, reviewer, console)
    return reviewer, console.export_text()


def test_deploy_creates_the_stacks_in_order_and_wires_each_stacks_outputs_into_the_next(
    options: Options, clients: Clients
) -> None:
    reviewer, shown = _deploy_all_but_monitoring(options, clients)
    env = options.environment
    assert list(reviewer.seen) == ["consumer", "api", "monitoring"]
    consumer, api = _stack(stack_name("consumer", env)), _stack(stack_name("api", env))

    # the consumer stack's resources
    kinesis = boto3.client("kinesis")
    stream = kinesis.describe_stream_summary(StreamName=consumer["outputs"]["StreamName"])
    summary = stream["StreamDescriptionSummary"]
    assert (summary["StreamModeDetails"]["StreamMode"], summary["OpenShardCount"]) == ("PROVISIONED", 2)
    assert summary["RetentionPeriodHours"] == 168
    boto3.client("dynamodb").describe_table(TableName=consumer["outputs"]["AnalyticsTableName"])
    boto3.client("sqs").get_queue_url(QueueName=consumer["outputs"]["DeadLetterQueueName"])
    boto3.client("sns").get_topic_attributes(TopicArn=consumer["outputs"]["AlertsTopicArn"])
    (service,) = boto3.client("ecs").describe_services(
        cluster=consumer["outputs"]["ClusterName"], services=[consumer["outputs"]["ServiceName"]]
    )["services"]
    assert service["desiredCount"] == 2  # MinTasks
    assert (consumer["parameters"]["MinTasks"], consumer["parameters"]["MaxTasks"]) == ("2", "2")

    # the API stack, given the consumer stack's outputs rather than names
    assert api["parameters"]["UsageStreamArn"] == consumer["outputs"]["StreamArn"]
    assert api["parameters"]["UsageStreamName"] == consumer["outputs"]["StreamName"]
    assert api["parameters"]["AnalyticsTableName"] == consumer["outputs"]["AnalyticsTableName"]
    lambdas = boto3.client("lambda")
    authorizer = lambdas.get_function_configuration(FunctionName=api["outputs"]["AuthorizerFunctionName"])
    assert authorizer["Environment"]["Variables"]["USAGE_STREAM_NAME"] == consumer["outputs"]["StreamName"]
    assert authorizer["Environment"]["Variables"]["ENABLE_KINESIS_ANALYTICS"] == "true"
    usage_api = lambdas.get_function_configuration(FunctionName=f"complical-usage-api-{env}")
    assert (
        usage_api["Environment"]["Variables"]["ANALYTICS_TABLE_NAME"]
        == consumer["outputs"]["AnalyticsTableName"]
    )
    code = boto3.client("s3").head_object(Bucket=options.code_bucket, Key=api["parameters"]["CodeKey"])
    assert code["ContentLength"] > 0
    assert _emits_to(stack_name("api", env)) == [consumer["outputs"]["StreamArn"]]

    # the monitoring stack's change set, given both stacks' outputs; declined, so no stack is left
    wired = {p["ParameterKey"]: p.get("ParameterValue") for p in reviewer.seen["monitoring"]["Parameters"]}
    for name in ("StreamName", "DeadLetterQueueName", "ClusterName", "ServiceName"):
        assert wired[name] == consumer["outputs"][name]
    assert wired["AuthorizerFunctionName"] == api["outputs"]["AuthorizerFunctionName"]
    with pytest.raises(boto3.client("cloudformation").exceptions.ClientError, match="does not exist"):
        boto3.client("cloudformation").describe_stacks(StackName=stack_name("monitoring", env))

    # what the operator was shown before each execution
    assert "UsageStream" in shown and "AWS::Kinesis::Stream" in shown and "Add" in shown
    assert f"{stack_name('consumer', env)} output StreamArn" in shown


def test_a_redeploy_after_a_reshard_keeps_the_shards_and_raises_the_task_bound(
    options: Options, clients: Clients
) -> None:
    """The stack never resizes the stream back; autoscaling's maximum follows the open shards."""
    _deploy_all_but_monitoring(options, clients)
    consumer = stack_name("consumer", options.environment)
    stream = _stack(consumer)["outputs"]["StreamName"]
    reshard.reshard(boto3.client("kinesis"), stream, 4)

    _deploy_all_but_monitoring(options, clients)
    summary = boto3.client("kinesis").describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    parameters = _stack(consumer)["parameters"]
    assert (parameters["ShardCount"], parameters["MaxTasks"]) == ("2", "4")  # kept; one task per shard


def test_without_analytics_only_the_api_stack_is_deployed_and_the_authorizer_emits_nothing(
    options: Options, clients: Clients
) -> None:
    off = Options(**{**options.__dict__, "analytics": False})
    reviewer = Reviewer()
    outputs = deploy(off, clients, reviewer, Console(record=True))
    env = options.environment
    assert list(reviewer.seen) == list(outputs) == ["api"]
    cfn = boto3.client("cloudformation")
    for key in ("consumer", "monitoring"):
        with pytest.raises(cfn.exceptions.ClientError, match="does not exist"):
            cfn.describe_stacks(StackName=stack_name(key, env))
    assert f"complical-usage-stream-{env}" not in boto3.client("kinesis").list_streams()["StreamNames"]
    api = _stack(stack_name("api", env))
    assert (api["parameters"]["UsageStreamArn"], api["parameters"]["AnalyticsTableName"]) == ("", "")
    authorizer = boto3.client("lambda").get_function_configuration(FunctionName=f"complical-authorizer-{env}")
    assert authorizer["Environment"]["Variables"]["ENABLE_KINESIS_ANALYTICS"] == "false"
    assert _emits_to(stack_name("api", env)) == []  # no kinesis:PutRecords statement at all


def _emits_to(api_stack: str) -> list[str]:
    """The streams the authorizer's role may put records on."""
    iam = boto3.client("iam")
    (role,) = [
        r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(f"{api_stack}-AuthorizerRole")
    ]
    (name,) = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):  # moto keeps a policy from CloudFormation as Python's repr of it
        document = ast.literal_eval(document)
    statements = [s for s in document["Statement"] if s]  # moto keeps AWS::NoValue as None
    return [s["Resource"] for s in statements if "kinesis:PutRecords" in _listed(s["Action"])]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_the_command_with_yes_deploys_without_asking(
    options: Options, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`metering deploy ... --yes` end to end, with the analytics off (the one stack moto executes
    without the outputs it leaves out)."""
    monkeypatch.setenv("COLUMNS", "200")
    argv = ["deploy", "--environment", options.environment, "--enable-kinesis-analytics", "false"]
    argv += [
        "--code-bucket",
        str(options.code_bucket),
        "--backend-url",
        "https://backend.example.com",
        "--yes",
    ]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert f"complical-api-{options.environment}: created" in shown
    assert "AWS::Lambda::Function" in shown
    assert _stack(stack_name("api", options.environment))["parameters"]["EnableKinesisAnalytics"] == "false"
