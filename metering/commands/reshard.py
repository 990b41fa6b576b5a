"""`metering reshard --shards N`: change the open shard count of a provisioned stream.

One `UpdateShardCount` call (uniform scaling: shards of equal hash ranges), then a wait until the
stream is ACTIVE again; prints the open shards before and after. Kinesis moves a stream by at most a
factor of two per call (no more than double, no less than half the open shards), at most ten times
in 24 hours and within the account's shard limit: a target outside one call's reach is refused with
the steps that reach it. An on-demand stream is refused: Kinesis scales it itself.

Counting stays exactly once through a reshard: records already in a parent shard stay there, new
ones go to its children, and the KCL reads a parent to its end before its children
(consumer/EXACTLY_ONCE.md).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from consumer import aws
from consumer.settings import ConsumerSettings
from contract.aws import aws_error_code
from metering.errors import CommandError, usage_error

MAX_SHARDS_PER_STREAM = 10_000  # Kinesis' default limit per stream
# Resharding takes seconds to minutes, in proportion to the shards it splits or merges.
WAIT = {"Delay": 5, "MaxAttempts": 360}


@dataclass(frozen=True)
class Resharded:
    stream: str
    before: list[dict[str, Any]]  # open shards, as ListShards describes them
    after: list[dict[str, Any]]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reshard", help="change the open shard count of a provisioned stream (at most x2 or /2 per call)"
    )
    parser.add_argument("--shards", type=int, required=True, help="open shards wanted")
    parser.add_argument("--stream", help="stream name (default: USAGE_STREAM_NAME, from ENVIRONMENT)")
    parser.set_defaults(handler=reshard_command)


def reshard_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    kinesis = aws.client("kinesis", settings.region)
    result = reshard(kinesis, args.stream or settings.stream_name, args.shards)
    print_result(Console(), result)
    return 0


def reshard(kinesis: Any, stream: str, target: int) -> Resharded:
    """Bring `stream` to `target` open shards; refused before any change if Kinesis would refuse."""
    summary = _summary(kinesis, stream)
    if summary["StreamModeDetails"]["StreamMode"] == "ON_DEMAND":
        raise CommandError(
            f"stream {stream} is on-demand: Kinesis adds and removes its shards itself, and "
            "UpdateShardCount applies to provisioned streams only (to choose the shard count, deploy "
            "it with --stream-mode provisioned)"
        )
    if summary["StreamStatus"] != "ACTIVE":
        raise CommandError(f"stream {stream} is {summary['StreamStatus']}: wait until it is ACTIVE")
    before = aws.open_shards(kinesis, stream)
    check_target(len(before), target)
    if target == len(before):
        return Resharded(stream, before, before)
    _call(
        f"resharding {stream}",
        kinesis.update_shard_count,
        StreamName=stream,
        TargetShardCount=target,
        ScalingType="UNIFORM_SCALING",
    )
    _call(
        f"waiting for {stream}",
        kinesis.get_waiter("stream_exists").wait,
        StreamName=stream,
        WaiterConfig=WAIT,
    )
    return Resharded(stream, before, aws.open_shards(kinesis, stream))


def check_target(current: int, target: int) -> None:
    """Refuse a target Kinesis would refuse in one call, naming the calls that reach it."""
    if not 1 <= target <= MAX_SHARDS_PER_STREAM:
        raise usage_error(
            f"--shards must be between 1 and {MAX_SHARDS_PER_STREAM} (Kinesis' limit per stream)"
        )
    lowest, highest = math.ceil(current / 2), current * 2
    if not lowest <= target <= highest:
        steps = " -> ".join(str(n) for n in steps_to(current, target))
        raise usage_error(
            f"Kinesis changes a stream by at most doubling or halving its open shards in one call: "
            f"from {current}, choose {lowest} to {highest}. Reach {target} in steps: {current} -> {steps} "
            "(one `metering reshard` each; at most 10 per stream in 24 hours)"
        )


def steps_to(current: int, target: int) -> list[int]:
    """The shard counts of the fewest calls from `current` to `target`, each within a factor of 2."""
    steps: list[int] = []
    while current != target:
        current = min(current * 2, target) if target > current else max(math.ceil(current / 2), target)
        steps.append(current)
    return steps


def print_result(console: Console, result: Resharded) -> None:
    before, after = len(result.before), len(result.after)
    if before == after and result.before == result.after:
        console.print(f"stream {result.stream}: already {after} open shards, nothing to do")
        return
    table = Table(title=f"{result.stream}: {before} -> {after} open shards")
    table.add_column("open shards before")
    table.add_column("open shards after")
    table.add_column("parents")
    for row in range(max(before, after)):
        old = result.before[row]["ShardId"] if row < before else ""
        new = result.after[row] if row < after else None
        parents = ", ".join(_parents(new)) if new else ""
        table.add_row(old, new["ShardId"] if new else "", parents)
    console.print(table)
    console.print(
        "The consumer reads each parent to its end, then its children: counting stays exactly once. "
        "Run `metering deploy` again so that autoscaling's maximum follows the new shard count."
    )


def _parents(shard: dict[str, Any]) -> list[str]:
    return [shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key)]


def _summary(kinesis: Any, stream: str) -> dict[str, Any]:
    summary: dict[str, Any] = _call(
        f"describing {stream}", kinesis.describe_stream_summary, StreamName=stream
    )
    return dict(summary["StreamDescriptionSummary"])


def _call(what: str, operation: Any, **kwargs: Any) -> Any:
    """An AWS call whose failure ends the command with Kinesis' own reason."""
    try:
        return operation(**kwargs)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        raise CommandError(f"{what}: {aws_error_code(exc)}: {message}") from exc
    except BotoCoreError as exc:  # waiters' failures included
        raise CommandError(f"{what}: {exc}") from exc
