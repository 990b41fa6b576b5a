"""`metering reshard` against the embedded emulator, whose Kinesis reshards as Kinesis does.

moto's UpdateShardCount splits every open shard (scaling up) or merges adjacent pairs (down)
through the stream's own split and merge, which the emulator replaces (metering/emulator.py): so
after UpdateShardCount, as after SplitShard and MergeShards, the parents keep their records once and
end with their children, and new records go to the open children only. Kinesis' own limits (at
most double or half per call) are not enforced by moto: the command enforces them before calling.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from rich.console import Console

from metering.cli import main
from metering.commands.reshard import check_target, print_result, reshard, steps_to
from metering.errors import CommandError

pytestmark = pytest.mark.usefixtures("aws_env")


def _put(kinesis: Any, stream: str, count: int) -> dict[str, str]:
    """Put `count` records; each record's id -> the shard PutRecords placed it on."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    reply = kinesis.put_records(
        StreamName=stream, Records=[{"Data": i.encode(), "PartitionKey": i} for i in ids]
    )
    assert reply["FailedRecordCount"] == 0
    return {i: r["ShardId"] for i, r in zip(ids, reply["Records"], strict=True)}


def _read(kinesis: Any, stream: str, shard: str) -> tuple[list[str], dict[str, Any]]:
    """Every record id of a shard, in order, and the last GetRecords reply."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    ids: list[str] = []
    while True:
        reply = kinesis.get_records(ShardIterator=iterator, Limit=100)
        ids += [r["Data"].decode() for r in reply["Records"]]
        iterator = reply.get("NextShardIterator")
        if iterator is None or not reply["Records"]:
            return ids, reply


def _lineage_reads_every_record_once(kinesis: Any, stream: str, placed: dict[str, str]) -> None:
    """Each shard, open or closed, holds exactly the records placed on it; a closed one ends with its
    children, as the KCL needs to follow the lineage."""
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    children = {
        s["ShardId"]: [
            c["ShardId"]
            for c in shards
            if s["ShardId"] in (c.get("ParentShardId"), c.get("AdjacentParentShardId"))
        ]
        for s in shards
    }
    seen: list[str] = []
    for shard in shards:
        ids, last = _read(kinesis, stream, shard["ShardId"])
        assert sorted(ids) == sorted(i for i, s in placed.items() if s == shard["ShardId"])
        seen += ids
        if "EndingSequenceNumber" in shard["SequenceNumberRange"]:
            assert last.get("NextShardIterator") is None
            assert sorted(c["ShardId"] for c in last["ChildShards"]) == sorted(children[shard["ShardId"]])
    assert sorted(seen) == sorted(placed)


def test_resharding_up_then_down_keeps_every_record_once_and_routes_new_ones_to_open_shards(
    stream: tuple[Any, str],
) -> None:
    kinesis, name = stream
    placed = _put(kinesis, name, 200)

    up = reshard(kinesis, name, 4)
    assert (len(up.before), len(up.after)) == (2, 4)
    assert {s["ShardId"] for s in up.before}.isdisjoint(s["ShardId"] for s in up.after)
    assert all(s.get("ParentShardId") in {b["ShardId"] for b in up.before} for s in up.after)
    after_split = _put(kinesis, name, 200)
    assert set(after_split.values()) <= {s["ShardId"] for s in up.after}
    placed |= after_split

    down = reshard(kinesis, name, 2)
    assert (len(down.before), len(down.after)) == (4, 2)
    assert all(s.get("AdjacentParentShardId") for s in down.after)  # each a merge of two
    after_merge = _put(kinesis, name, 200)
    assert set(after_merge.values()) <= {s["ShardId"] for s in down.after}
    placed |= after_merge

    _lineage_reads_every_record_once(kinesis, name, placed)


def test_the_command_prints_the_open_shards_before_and_after(
    stream: tuple[Any, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, name = stream
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main(["reshard", "--stream", name, "--shards", "3"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"{name}: 2 -> 3 open shards" in out
    assert "shardId-000000000000" in out  # a parent, before


def test_a_target_beyond_doubling_is_refused_with_the_steps_and_nothing_changes(
    stream: tuple[Any, str],
) -> None:
    kinesis, name = stream
    with pytest.raises(CommandError, match=r"at most doubling or halving.*2 -> 4 -> 5") as refused:
        reshard(kinesis, name, 5)
    assert refused.value.exit_code == 2
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"] == 2


def test_an_on_demand_stream_is_refused() -> None:
    kinesis = boto3.client("kinesis")
    name = f"on-demand-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    with pytest.raises(CommandError, match="on-demand: Kinesis adds and removes its shards itself"):
        reshard(kinesis, name, 8)


def test_the_same_count_changes_nothing(stream: tuple[Any, str]) -> None:
    kinesis, name = stream
    result = reshard(kinesis, name, 2)
    assert result.before == result.after
    console = Console(record=True)
    print_result(console, result)
    assert "already 2 open shards" in console.export_text()


@pytest.mark.parametrize(
    ("current", "target", "steps"),
    [(2, 4, [4]), (2, 10, [4, 8, 10]), (16, 3, [8, 4, 3]), (3, 2, [2]), (5, 2, [3, 2]), (1, 1, [])],
)
def test_steps_double_or_halve_at_most(current: int, target: int, steps: list[int]) -> None:
    assert steps_to(current, target) == steps
    previous = current
    for step in steps:
        check_target(previous, step)  # each step is one call Kinesis accepts
        previous = step


def test_kinesis_limits_per_call() -> None:
    check_target(4, 8)
    check_target(4, 2)
    check_target(3, 2)  # half of 3, rounded up
    for current, target in ((4, 9), (4, 1), (3, 1), (2, 0)):
        with pytest.raises(CommandError):
            check_target(current, target)
