"""`metering deploy`: every stack of an environment, in order, from one command.

    metering deploy --environment prod [--enable-kinesis-analytics true|false] [--image URI]
        [--code-bucket BUCKET] [--vpc VPC --subnets A,B] [--backend-url URL] [--yes] ...

1. The authorizer's zip (authorizer/build_zip.py, byte-identical for identical sources) goes to the
   code bucket under a key named by its content: a changed zip is a changed `CodeKey`, so
   CloudFormation updates the functions, and an unchanged one changes nothing. The templates go
   next to it (TemplateURL: no 51,200-byte TemplateBody limit).
2. With the analytics on, the consumer stack (ecs/consumer.yaml): stream, table, queue, topic, the
   ECS service and its autoscaling.
3. The API stack (ecs/api-gateway.yaml), given the consumer stack's outputs (StreamArn, StreamName,
   AnalyticsTableName); with the analytics off, none, and the authorizer emits nothing.
4. With the analytics on, the monitoring stack (ecs/monitoring.yaml), given both stacks' outputs.

Each stack goes through a change set shown as a table before it is executed. `--yes` executes
without asking; without a terminal to ask on, the command refuses unless `--yes` is given. A
parameter the command line does not set keeps the stack's previous value (the template's default
on creation); `--parameter consumer.LogLevel=DEBUG` sets any other. `KeepLegacyBucketIndex` follows
the analytics table: a table from before the keys-only index keeps its old index until the new one
is active, so such a stack moves in two deploys.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table

from authorizer import build_zip
from consumer import aws
from consumer.settings import ConsumerSettings
from contract.aws import aws_error_code
from contract.environment import environment_name
from contract.table import BUCKET_INDEX, LEGACY_BUCKET_INDEX
from metering.commands.provision import STREAM_SHARDS
from metering.errors import CommandError, usage_error

TEMPLATES = Path(__file__).resolve().parents[2] / "ecs"
STACKS = {"consumer": "consumer.yaml", "api": "api-gateway.yaml", "monitoring": "monitoring.yaml"}
ON_DEMAND_FIRST_SHARDS = 4  # what Kinesis gives a new on-demand stream (4 MiB/s of writes)
DEFAULT_MIN_TASKS = 2
CHANGE_SET_WAIT = {"Delay": 5, "MaxAttempts": 120}
# Creating the ECS service waits for its tasks to be healthy: allow an hour.
STACK_WAIT = {"Delay": 15, "MaxAttempts": 240}
# CloudFormation's replies when a change set would change nothing (create, then describe).
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


@dataclass(frozen=True)
class Param:
    value: str | None  # None: the stack's previous value, or the template's default
    source: str  # where the value comes from, shown with the change set


@dataclass(frozen=True)
class StackPlan:
    key: str  # consumer | api | monitoring
    name: str
    parameters: dict[str, Param]


@dataclass(frozen=True)
class Existing:
    status: str
    parameters: dict[str, str]
    outputs: dict[str, str]

    @property
    def reviewing(self) -> bool:
        """Only a change set so far, never executed: the stack is created, not updated."""
        return self.status == "REVIEW_IN_PROGRESS"


@dataclass(frozen=True)
class LiveStream:
    mode: str  # PROVISIONED | ON_DEMAND
    open_shards: int


# The analytics table's indexes as they are now, by name: CREATING, ACTIVE, ...; None: no table yet.
LiveIndexes = dict[str, str] | None


@dataclass(frozen=True)
class Options:
    environment: str
    analytics: bool = True
    image: str | None = None
    code_bucket: str | None = None
    vpc: str | None = None
    subnets: tuple[str, ...] = ()
    backend_url: str | None = None
    stream_mode: str | None = None  # PROVISIONED | ON_DEMAND
    shards: int | None = None
    min_tasks: int | None = None
    max_tasks: int | None = None
    cpu_architecture: str | None = None
    alarm_email: str | None = None
    overrides: tuple[tuple[str, str, str], ...] = ()  # (stack, parameter, value)


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    s3: Any
    kinesis: Any
    dynamodb: Any

    @classmethod
    def for_region(cls, region: str) -> Clients:
        return cls(*(aws.client(name, region) for name in ("cloudformation", "s3", "kinesis", "dynamodb")))


# Asked before a change set is executed, with the stack's plan and the change set (DescribeChangeSet).
Approve = Callable[[StackPlan, dict[str, Any]], bool]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "deploy", help="deploy the consumer, API and monitoring stacks in order (change sets shown first)"
    )
    parser.add_argument("--environment", required=True, help="suffix of every stack and resource name")
    parser.add_argument(
        "--enable-kinesis-analytics",
        choices=("true", "false"),
        default="true",
        help="true: all three stacks; false: the API stack alone, its authorizer emitting nothing",
    )
    parser.add_argument("--image", help="consumer image URI (needed to create the consumer stack)")
    parser.add_argument("--code-bucket", help="S3 bucket for the authorizer zip (default: the stack's)")
    parser.add_argument("--vpc", help="VPC of the consumer tasks (needed to create the consumer stack)")
    parser.add_argument("--subnets", help="comma-separated subnets of the consumer tasks (with --vpc)")
    parser.add_argument("--backend-url", help="the API's backend (needed to create the API stack)")
    parser.add_argument("--stream-mode", choices=("provisioned", "on-demand"), help="default: provisioned")
    parser.add_argument("--shards", type=int, help=f"shards of a new provisioned stream ({STREAM_SHARDS})")
    parser.add_argument("--min-tasks", type=int, help=f"consumer tasks at least ({DEFAULT_MIN_TASKS})")
    parser.add_argument("--max-tasks", type=int, help="consumer tasks at most (default: one per shard)")
    parser.add_argument(
        "--cpu-architecture", choices=("X86_64", "ARM64"), help="what the image was built for"
    )
    parser.add_argument("--alarm-email", help="an address subscribed to the alarm topic")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="STACK.NAME=VALUE",
        help="any other parameter, e.g. consumer.LogLevel=DEBUG (STACK: consumer, api, monitoring)",
    )
    parser.add_argument("--yes", action="store_true", help="execute every change set without asking")
    parser.set_defaults(handler=deploy_command)


def deploy_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    options = options_from(args)
    if not args.yes and not sys.stdin.isatty():
        raise usage_error("no terminal to ask before executing change sets: pass --yes to execute them")
    console = Console()
    approve = _always if args.yes else _ask
    outputs = deploy(options, Clients.for_region(settings.region), approve, console)
    _print_outputs(console, options.environment, outputs)
    return 0


def options_from(args: argparse.Namespace) -> Options:
    """The command line as deploy options; a value that cannot work is a usage error (exit 2)."""
    try:
        environment = environment_name(args.environment)
    except ValueError as exc:
        raise usage_error(f"--environment: {exc}") from exc
    for flag in ("shards", "min_tasks", "max_tasks"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise usage_error(f"--{flag.replace('_', '-')} must be at least 1")
    return Options(
        environment=environment,
        analytics=args.enable_kinesis_analytics == "true",
        image=args.image,
        code_bucket=args.code_bucket,
        vpc=args.vpc,
        subnets=tuple(s.strip() for s in (args.subnets or "").split(",") if s.strip()),
        backend_url=args.backend_url,
        stream_mode=args.stream_mode.upper().replace("-", "_") if args.stream_mode else None,
        shards=args.shards,
        min_tasks=args.min_tasks,
        max_tasks=args.max_tasks,
        cpu_architecture=args.cpu_architecture,
        alarm_email=args.alarm_email,
        overrides=tuple(_override(raw) for raw in args.parameter),
    )


def _override(raw: str) -> tuple[str, str, str]:
    target, found, value = raw.partition("=")
    stack, dot, name = target.partition(".")
    if not (found and dot and name) or stack not in STACKS:
        raise usage_error(f"--parameter {raw!r}: use STACK.NAME=VALUE, STACK one of {', '.join(STACKS)}")
    return stack, name, value


def stack_name(key: str, environment: str) -> str:
    return {
        "consumer": f"complical-usage-consumer-{environment}",
        "api": f"complical-api-{environment}",
        "monitoring": f"complical-usage-monitoring-{environment}",
    }[key]


# -- the whole deployment -------------------------------------------------------------------------


def deploy(
    options: Options, clients: Clients, approve: Approve, console: Console
) -> dict[str, dict[str, str]]:
    """Deploy the stacks the options call for, in order; the outputs of each stack deployed.

    What the command line must supply is checked before anything is uploaded or changed.
    """
    if not TEMPLATES.is_dir():
        raise CommandError(f"no templates at {TEMPLATES}: run `metering deploy` from the repository")
    with _translated("deploy"):
        cfn = clients.cloudformation
        existing = {key: describe_stack(cfn, stack_name(key, options.environment)) for key in STACKS}
        consumer, bucket = _preflight(options, clients, existing)
        run = _Run(options, clients, bucket, approve, console)
        code_key = upload_authorizer(clients.s3, bucket, console)
        outputs: dict[str, dict[str, str]] = {}
        if consumer is not None:
            outputs["consumer"] = run.apply("consumer", consumer)
        outputs["api"] = run.apply("api", api_parameters(options, bucket, code_key, outputs.get("consumer")))
        if consumer is not None:
            monitoring = monitoring_parameters(options, outputs["consumer"], outputs["api"])
            outputs["monitoring"] = run.apply("monitoring", monitoring)
        else:
            _note_left_in_place(console, options.environment, existing)
        return outputs


def _preflight(
    options: Options, clients: Clients, existing: dict[str, Existing | None]
) -> tuple[dict[str, Param] | None, str]:
    """The consumer stack's parameters (None with the analytics off) and the code bucket, or why not."""
    for key in STACKS if options.analytics else ("api",):
        _check_status(stack_name(key, options.environment), existing[key])
    consumer = None
    if options.analytics:
        live = _live_stream(clients.kinesis, existing["consumer"])
        indexes = _live_indexes(clients.dynamodb, existing["consumer"])
        consumer = consumer_parameters(options, _previous(existing["consumer"]), live, indexes)
    bucket = options.code_bucket or _previous(existing["api"]).get("CodeBucket")
    if not bucket:
        raise usage_error("--code-bucket is needed: the API stack does not exist yet")
    if not _previous(existing["api"]) and not options.backend_url:
        raise usage_error("--backend-url is needed to create the API stack")
    return consumer, bucket


def _note_left_in_place(console: Console, environment: str, existing: dict[str, Existing | None]) -> None:
    for key in ("consumer", "monitoring"):
        if existing[key] is not None:
            console.print(
                f"[yellow]analytics off: {stack_name(key, environment)} is left as it is; delete it "
                "when nothing needs it (the table and the dead-letter queue are retained)[/]"
            )


# -- parameters of each stack ---------------------------------------------------------------------


def consumer_parameters(
    options: Options, previous: dict[str, str], live: LiveStream | None, indexes: LiveIndexes = None
) -> dict[str, Param]:
    """ecs/consumer.yaml's parameters: the stream's mode and shards, the task bounds, the network,
    and whether the table keeps the index it had before the keys-only one."""
    mode = options.stream_mode or previous.get("StreamMode") or (live.mode if live else "PROVISIONED")
    shard_count, shards = _shard_count(options, mode, previous, live)
    min_tasks = options.min_tasks or int(previous.get("MinTasks", DEFAULT_MIN_TASKS))
    max_tasks = _max_tasks(options, mode, shards, min_tasks)
    return {
        "Environment": Param(options.environment, "--environment"),
        "Image": _required(options.image, "--image", previous, "Image", "the consumer stack"),
        "VpcId": _required(options.vpc, "--vpc", previous, "VpcId", "the consumer stack"),
        "SubnetIds": _required(
            ",".join(options.subnets) or None, "--subnets", previous, "SubnetIds", "the consumer stack"
        ),
        "StreamMode": Param(mode, "--stream-mode" if options.stream_mode else "the stream's mode"),
        "ShardCount": shard_count,
        "MinTasks": Param(str(min_tasks), "--min-tasks" if options.min_tasks else "previous or default"),
        "MaxTasks": Param(
            str(max_tasks), "--max-tasks" if options.max_tasks else f"one task per shard ({shards})"
        ),
        "CpuArchitecture": Param(options.cpu_architecture, "--cpu-architecture"),
        "KeepLegacyBucketIndex": _legacy_index(indexes, previous),
    }


def _legacy_index(indexes: LiveIndexes, previous: dict[str, str]) -> Param:
    """Tables created before the keys-only index move to it in two updates, as CloudFormation adds
    or removes one index per update: the first adds it beside the old one (with the image that reads
    it), the next, once it is active, removes the old one. Each `metering deploy` takes the step the
    table is ready for; the old index goes only after a deploy of this stack kept it."""
    if indexes is None or LEGACY_BUCKET_INDEX not in indexes:
        return Param("false", f"the table's index is {BUCKET_INDEX}")
    if indexes.get(BUCKET_INDEX) == "ACTIVE" and previous.get("KeepLegacyBucketIndex") == "true":
        return Param("false", f"{BUCKET_INDEX} is active: {LEGACY_BUCKET_INDEX} is removed")
    state = indexes.get(BUCKET_INDEX, "added now")
    return Param(
        "true", f"{LEGACY_BUCKET_INDEX} stays while {BUCKET_INDEX} is {state.lower()}: deploy again after"
    )


def _shard_count(
    options: Options, mode: str, previous: dict[str, str], live: LiveStream | None
) -> tuple[Param, int]:
    """The ShardCount parameter, and the open shards that bound the task count.

    Deploy sets the shard count when it creates a provisioned stream; after that, `metering reshard`
    changes it (within Kinesis' limits) and the parameter keeps its previous value, so that
    CloudFormation never resizes the stream back.
    """
    if mode == "ON_DEMAND":
        if options.shards is not None:
            raise usage_error("--shards applies to provisioned streams: an on-demand stream sizes itself")
        return Param(None, "unused on-demand"), live.open_shards if live else ON_DEMAND_FIRST_SHARDS
    if live is None:
        shards = options.shards or STREAM_SHARDS
        return Param(str(shards), "--shards" if options.shards else "default"), shards
    if options.shards is not None and options.shards != live.open_shards:
        raise usage_error(
            f"the stream has {live.open_shards} open shards: change them with `metering reshard --shards "
            f"{options.shards}` (deploy sets the shard count only when it creates the stream)"
        )
    if "ShardCount" in previous and live.mode == "PROVISIONED":
        return Param(None, f"previous ({live.open_shards} open shards now)"), live.open_shards
    return Param(str(live.open_shards), "the stream's open shards"), live.open_shards


def _max_tasks(options: Options, mode: str, shards: int, min_tasks: int) -> int:
    """At most one task per shard: a shard's lease is held by one task, so more tasks would idle.

    An on-demand stream's shard count follows its writes (4 at first): the bound is its shard count
    when deployed, or `--max-tasks` for the peak the operator expects.
    """
    if options.max_tasks is not None and mode == "PROVISIONED" and options.max_tasks > shards:
        raise usage_error(
            f"--max-tasks {options.max_tasks} is more than the stream's {shards} shards: a task beyond "
            "one per shard holds no lease and idles (reshard first: metering reshard)"
        )
    max_tasks = options.max_tasks or max(shards, min_tasks)
    if max_tasks < min_tasks:
        raise usage_error(f"--max-tasks {max_tasks} is below the minimum of {min_tasks} tasks")
    return max_tasks


def api_parameters(
    options: Options, bucket: str, code_key: str, consumer: dict[str, str] | None
) -> dict[str, Param]:
    """ecs/api-gateway.yaml's parameters: the code, and the consumer stack's outputs or nothing."""
    wired = {
        "UsageStreamArn": "StreamArn",
        "UsageStreamName": "StreamName",
        "AnalyticsTableName": "AnalyticsTableName",
    }
    source = stack_name("consumer", options.environment)
    return {
        "Environment": Param(options.environment, "--environment"),
        "CodeBucket": Param(bucket, "--code-bucket" if options.code_bucket else "previous"),
        "CodeKey": Param(code_key, "the uploaded zip"),
        "BackendUrl": Param(options.backend_url, "--backend-url"),
        "EnableKinesisAnalytics": Param(str(options.analytics).lower(), "--enable-kinesis-analytics"),
    } | {
        name: Param(_output(consumer, source, output), f"{source} output {output}")
        if consumer is not None
        else Param("", "analytics off")
        for name, output in wired.items()
    }


def monitoring_parameters(
    options: Options, consumer: dict[str, str], api: dict[str, str]
) -> dict[str, Param]:
    """ecs/monitoring.yaml's parameters: what it watches, from the other two stacks' outputs."""
    wired = {
        "StreamName": ("consumer", consumer, "StreamName"),
        "DeadLetterQueueName": ("consumer", consumer, "DeadLetterQueueName"),
        "ClusterName": ("consumer", consumer, "ClusterName"),
        "ServiceName": ("consumer", consumer, "ServiceName"),
        "AuthorizerFunctionName": ("api", api, "AuthorizerFunctionName"),
    }
    parameters = {"Environment": Param(options.environment, "--environment")}
    for name, (key, outputs, output) in wired.items():
        source = stack_name(key, options.environment)
        parameters[name] = Param(_output(outputs, source, output), f"{source} output {output}")
    parameters["AlarmEmail"] = Param(options.alarm_email, "--alarm-email")
    return parameters


def _required(value: str | None, flag: str, previous: dict[str, str], name: str, stack: str) -> Param:
    if value is None and name not in previous:
        raise usage_error(f"{flag} is needed to create {stack}")
    return Param(value, flag)


def _output(outputs: dict[str, str], stack: str, name: str) -> str:
    if name not in outputs:
        raise CommandError(f"stack {stack} has no output {name}")
    return outputs[name]


# -- AWS ------------------------------------------------------------------------------------------


def upload_authorizer(s3: Any, bucket: str, console: Console) -> str:
    """Build the authorizer's zip and upload it under its content's hash; the key."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "authorizer.zip"
        build_zip.build(path)
        body = path.read_bytes()
    key = f"authorizer/{hashlib.sha256(body).hexdigest()[:24]}.zip"
    state = "already there" if _uploaded(s3, bucket, key, body) else "uploaded"
    console.print(f"authorizer code: s3://{bucket}/{key} ({len(body) / 1024:.0f} KiB, {state})")
    return key


def _uploaded(s3: Any, bucket: str, key: str, body: bytes) -> bool:
    """Put `body` at `key` unless it is there already; True if it was."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if aws_error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return False


def describe_stack(cfn: Any, name: str) -> Existing | None:
    try:
        (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return Existing(
        status=stack["StackStatus"],
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []},
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []},
    )


def _previous(existing: Existing | None) -> dict[str, str]:
    return {} if existing is None or existing.reviewing else existing.parameters


def _live_indexes(dynamodb: Any, consumer: Existing | None) -> LiveIndexes:
    """The consumer stack's analytics table's indexes and their states, if the stack has a table."""
    name = consumer.outputs.get("AnalyticsTableName") if consumer else None
    if not name:
        return None
    table = dynamodb.describe_table(TableName=name)["Table"]
    return {index["IndexName"]: index["IndexStatus"] for index in table.get("GlobalSecondaryIndexes", [])}


def _live_stream(kinesis: Any, consumer: Existing | None) -> LiveStream | None:
    """The consumer stack's stream as it is now (resharded, maybe), if the stack has one."""
    name = consumer.outputs.get("StreamName") if consumer else None
    if not name:
        return None
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return LiveStream(summary["StreamModeDetails"]["StreamMode"], summary["OpenShardCount"])


@dataclass(frozen=True)
class _Run:
    options: Options
    clients: Clients
    bucket: str
    approve: Approve
    console: Console

    def apply(self, key: str, parameters: dict[str, Param]) -> dict[str, str]:
        """One stack through a change set: create it, show it, execute it if approved; its outputs."""
        for stack, name, value in self.options.overrides:
            if stack == key:
                parameters = parameters | {name: Param(value, "--parameter")}
        plan = StackPlan(key, stack_name(key, self.options.environment), parameters)
        cfn = self.clients.cloudformation
        existing = describe_stack(cfn, plan.name)
        _check_status(plan.name, existing)
        creating = existing is None or existing.reviewing
        template = _template_url(self.clients.s3, self.bucket, key)
        change_set = _change_set(cfn, plan, template, creating, _previous(existing))
        if change_set is None:
            self.console.print(f"{plan.name}: no changes")
            return existing.outputs if existing else {}
        show_change_set(self.console, plan, change_set, _previous(existing))
        if not self.approve(plan, change_set):
            _discard(cfn, plan.name, change_set["ChangeSetId"], creating)
            raise CommandError(f"{plan.name}: change set not executed; nothing after it was deployed")
        _execute(cfn, plan.name, change_set["ChangeSetId"], creating)
        self.console.print(f"{plan.name}: {'created' if creating else 'updated'}")
        done = describe_stack(cfn, plan.name)
        return done.outputs if done else {}


def _discard(cfn: Any, name: str, change_set: str, creating: bool) -> None:
    cfn.delete_change_set(ChangeSetName=change_set)
    if creating:  # a stack in review holds no resources
        cfn.delete_stack(StackName=name)


def _execute(cfn: Any, name: str, change_set: str, creating: bool) -> None:
    cfn.execute_change_set(ChangeSetName=change_set)
    waiter = "stack_create_complete" if creating else "stack_update_complete"
    try:
        cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig=STACK_WAIT)
    except WaiterError as exc:
        raise CommandError(f"{name}: {'; '.join(_failures(cfn, name)) or exc}") from exc


def _check_status(name: str, existing: Existing | None) -> None:
    if existing is None or existing.reviewing:
        return
    if existing.status == "ROLLBACK_COMPLETE":
        raise CommandError(f"{name}: its creation failed and was rolled back; delete the stack, then deploy")
    if existing.status.endswith(("_IN_PROGRESS", "_FAILED")):
        raise CommandError(f"{name} is {existing.status}: wait for it, or repair it, then deploy")


def _template_url(s3: Any, bucket: str, key: str) -> str:
    """Upload a template next to the code (named by its content) and return its URL."""
    body = (TEMPLATES / STACKS[key]).read_bytes()
    name = f"templates/{Path(STACKS[key]).stem}-{hashlib.sha256(body).hexdigest()[:24]}.yaml"
    _uploaded(s3, bucket, name, body)
    return f"https://{bucket}.s3.{s3.meta.region_name}.amazonaws.com/{name}"


def _change_set(
    cfn: Any, plan: StackPlan, template: str, creating: bool, previous: dict[str, str]
) -> dict[str, Any] | None:
    """Create the stack's change set and wait for it; None if it would change nothing."""
    declared = [p["ParameterKey"] for p in cfn.get_template_summary(TemplateURL=template)["Parameters"]]
    unknown = sorted(set(plan.parameters) - set(declared))
    if unknown:
        raise usage_error(f"{plan.name} has no parameter {', '.join(unknown)}")
    try:
        reply = cfn.create_change_set(
            StackName=plan.name,
            ChangeSetName=f"metering-deploy-{time.strftime('%Y%m%d-%H%M%S')}",
            ChangeSetType="CREATE" if creating else "UPDATE",
            TemplateURL=template,
            Parameters=parameter_list(plan.parameters, declared, previous),
            Capabilities=["CAPABILITY_IAM"],
            Description="metering deploy",
        )
    except ClientError as exc:
        if any(reason in str(exc) for reason in NO_CHANGES):
            return None
        raise
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            ChangeSetName=reply["Id"], WaiterConfig=CHANGE_SET_WAIT
        )
    except WaiterError as exc:
        reason = cfn.describe_change_set(ChangeSetName=reply["Id"]).get("StatusReason", str(exc))
        if any(text in reason for text in NO_CHANGES):
            cfn.delete_change_set(ChangeSetName=reply["Id"])
            return None
        raise CommandError(f"{plan.name}: the change set failed: {reason}") from exc
    return _described(cfn, reply["Id"])


def parameter_list(
    parameters: dict[str, Param], declared: Iterable[str], previous: dict[str, str]
) -> list[dict[str, Any]]:
    """CreateChangeSet's parameters: ours where set, the previous value of every other one kept.

    A declared parameter left out would take the template's default, undoing an earlier setting.
    """
    listed: list[dict[str, Any]] = []
    for name in declared:
        value = parameters[name].value if name in parameters else None
        if value is not None:
            listed.append({"ParameterKey": name, "ParameterValue": value})
        elif name in previous:
            listed.append({"ParameterKey": name, "UsePreviousValue": True})
    return listed


def _described(cfn: Any, change_set: str) -> dict[str, Any]:
    """DescribeChangeSet with every page of its changes."""
    described: dict[str, Any] = cfn.describe_change_set(ChangeSetName=change_set)
    changes = list(described.get("Changes", []))
    while described.get("NextToken"):
        described = cfn.describe_change_set(ChangeSetName=change_set, NextToken=described["NextToken"])
        changes += described.get("Changes", [])
    return described | {"Changes": changes}


def _failures(cfn: Any, name: str) -> list[str]:
    """The reasons of the resources that failed in the latest operation, newest first (at most 5)."""
    reasons: list[str] = []
    for event in cfn.describe_stack_events(StackName=name)["StackEvents"]:
        if event["LogicalResourceId"] == name and event.get("ResourceStatusReason") == "User Initiated":
            break
        if event["ResourceStatus"].endswith("_FAILED") and event.get("ResourceStatusReason"):
            reasons.append(f"{event['LogicalResourceId']}: {event['ResourceStatusReason']}")
    return reasons[:5]


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """An AWS error during the deployment ends the command with AWS's own reason."""
    try:
        yield
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        raise CommandError(f"{what}: {aws_error_code(exc)}: {message}") from exc
    except BotoCoreError as exc:
        raise CommandError(f"{what}: {exc}") from exc


# -- what the operator sees -----------------------------------------------------------------------

_ACTION_STYLE = {"Add": "green", "Modify": "yellow", "Remove": "red", "Import": "cyan", "Dynamic": "magenta"}


def show_change_set(
    console: Console, plan: StackPlan, change_set: dict[str, Any], previous: dict[str, str]
) -> None:
    """The change set as two tables: the resources it changes, and the parameters with their sources."""
    changes = [c["ResourceChange"] for c in change_set["Changes"] if c.get("Type", "Resource") == "Resource"]
    table = Table(
        title=f"{plan.name}: {len(changes)} resource changes ({change_set.get('ChangeSetName', '')})"
    )
    for column in ("action", "resource", "type", "replacement", "what changes"):
        table.add_column(column)
    for change in changes:
        action = change.get("Action", "")
        table.add_row(
            f"[{_ACTION_STYLE.get(action, 'white')}]{action}[/]",
            change.get("LogicalResourceId", ""),
            change.get("ResourceType", ""),
            _replacement(change.get("Replacement")),
            _details(change),
        )
    console.print(table)
    parameters = Table(title=f"{plan.name}: parameters")
    for column in ("parameter", "value", "from"):
        parameters.add_column(column)
    for name, param in plan.parameters.items():
        shown = (
            param.value if param.value is not None else f"({'previous' if name in previous else 'default'})"
        )
        parameters.add_row(name, shown, param.source)
    console.print(parameters)


def _replacement(value: str | None) -> str:
    return {"True": "[bold red]yes[/]", "Conditional": "[red]maybe[/]", "False": "no"}.get(value or "", "")


def _details(change: dict[str, Any]) -> str:
    names = {d["Target"].get("Name") or d["Target"].get("Attribute", "") for d in change.get("Details", [])}
    return ", ".join(sorted(n for n in names if n)) or ", ".join(change.get("Scope", []))


def _print_outputs(console: Console, environment: str, outputs: dict[str, dict[str, str]]) -> None:
    table = Table(title="stack outputs")
    for column in ("stack", "output", "value"):
        table.add_column(column)
    for key, values in outputs.items():
        for name, value in sorted(values.items()):
            table.add_row(stack_name(key, environment), name, value)
    console.print(table)


def _always(_plan: StackPlan, _change_set: dict[str, Any]) -> bool:
    return True


def _ask(plan: StackPlan, _change_set: dict[str, Any]) -> bool:
    return Confirm.ask(f"Execute the change set of {plan.name}?", default=False)
