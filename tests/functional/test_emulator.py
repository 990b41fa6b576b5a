"""The embedded emulator behaves like AWS where our guarantees depend on it.

DynamoDB applies each request atomically (concurrent `ADD`s to one item, two writers creating one
item); an SQS long poll holds nothing else up; Kinesis splits and merges shards as Kinesis does:
records already in a parent stay there once, new records go to the open children, and a parent read
to its end returns no next iterator and its children.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from contract.table import analytics_table_spec

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def table() -> tuple[Any, str]:
    dynamodb = boto3.client("dynamodb")
    name = f"atomic-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(**analytics_table_spec(name))
    return dynamodb, name


def _add(dynamodb: Any, table: str, pk: str, times: int) -> None:
    for _ in range(times):
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": pk}, "sk": {"S": "TOTAL"}},
            UpdateExpression="ADD calls :one",
            ConditionExpression="attribute_not_exists(calls) OR calls < :cap",
            ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": "1000000"}},
        )


def _calls(dynamodb: Any, table: str, pk: str) -> int:
    key = {"pk": {"S": pk}, "sk": {"S": "TOTAL"}}
    item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
    return int(item["Item"]["calls"]["N"])


def test_concurrent_conditional_adds_to_one_item_all_count(table: tuple[Any, str]) -> None:
    """8 threads x 300 conditional ADDs to one item make 2,400 (moto alone lost some)."""
    dynamodb, name = table
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _add(dynamodb, name, "GLOBAL", 300), range(8)))
    assert _calls(dynamodb, name, "GLOBAL") == 2400


def test_two_writers_creating_one_item_both_count(table: tuple[Any, str]) -> None:
    """Two shards flushing a new item at once: neither update is lost (the first flush of a minute)."""
    dynamodb, name = table
    items = [f"GLOBAL#{n}" for n in range(40)]
    with ThreadPoolExecutor(2) as pool:
        for pk in items:
            list(pool.map(lambda _, pk=pk: _add(dynamodb, name, pk, 1), range(2)))
    assert {pk: _calls(dynamodb, name, pk) for pk in items} == dict.fromkeys(items, 2)


def test_an_sqs_long_poll_holds_up_no_other_request(table: tuple[Any, str]) -> None:
    """A 5 s ReceiveMessage is still waiting while other SQS and DynamoDB requests are answered."""
    dynamodb, name = table
    sqs = boto3.client("sqs")
    waiting = sqs.create_queue(QueueName=f"idle-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    busy = sqs.create_queue(QueueName=f"busy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    poll = threading.Thread(
        target=lambda: boto3.client("sqs").receive_message(QueueUrl=waiting, WaitTimeSeconds=5)
    )
    poll.start()
    sqs.send_message(QueueUrl=busy, MessageBody="x")
    assert len(sqs.receive_message(QueueUrl=busy)["Messages"]) == 1
    _add(dynamodb, name, "GLOBAL", 1)
    assert poll.is_alive(), "the other requests must not have waited for the long poll"
    poll.join()


# -- Kinesis resharding ---------------------------------------------------------------------------


def _put(kinesis: Any, stream: str, count: int) -> dict[str, tuple[str, str]]:
    """Put `count` records; each record's id -> (shard, sequence number) as PutRecords placed it."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    reply = kinesis.put_records(
        StreamName=stream, Records=[{"Data": i.encode(), "PartitionKey": i} for i in ids]
    )
    assert reply["FailedRecordCount"] == 0
    return {i: (r["ShardId"], r["SequenceNumber"]) for i, r in zip(ids, reply["Records"], strict=True)}


def _read(kinesis: Any, stream: str, shard: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Every record of a shard, (id, sequence) in order, and the last GetRecords reply."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records: list[tuple[str, str]] = []
    while True:
        reply = kinesis.get_records(ShardIterator=iterator, Limit=100)
        records += [(r["Data"].decode(), r["SequenceNumber"]) for r in reply["Records"]]
        iterator = reply.get("NextShardIterator")
        if iterator is None or not reply["Records"]:
            return records, reply


def _shards(kinesis: Any, stream: str) -> dict[str, dict[str, Any]]:
    return {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}


def _split(kinesis: Any, stream: str, shard_id: str) -> list[str]:
    shard = _shards(kinesis, stream)[shard_id]["HashKeyRange"]
    middle = (int(shard["StartingHashKey"]) + int(shard["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id, NewStartingHashKey=str(middle))
    return sorted(s for s, d in _shards(kinesis, stream).items() if d.get("ParentShardId") == shard_id)


def test_a_split_parent_keeps_its_records_once_ends_and_names_its_children(stream: tuple[Any, str]) -> None:
    """After a split the parent ends after its own records; new records go to the open children."""
    kinesis, name = stream
    before = _put(kinesis, name, 200)
    parent = "shardId-000000000000"
    in_parent = sorted((i, seq) for i, (shard, seq) in before.items() if shard == parent)
    children = _split(kinesis, name, parent)
    after = _put(kinesis, name, 200)

    records, last = _read(kinesis, name, parent)
    assert sorted(records) == in_parent  # the same records under the same sequence numbers, once
    assert last.get("NextShardIterator") is None
    assert sorted(c["ShardId"] for c in last["ChildShards"]) == children
    assert all(c["ParentShards"] == [parent] for c in last["ChildShards"])
    assert {shard for shard, _ in after.values()} <= {*children, "shardId-000000000001"}
    assert "EndingSequenceNumber" in _shards(kinesis, name)[parent]["SequenceNumberRange"]
    for child in children:
        assert sorted(_read(kinesis, name, child)[0]) == sorted(
            (i, seq) for i, (shard, seq) in after.items() if shard == child
        )


def test_a_merge_ends_both_parents_and_routes_to_the_merged_shard(stream: tuple[Any, str]) -> None:
    """Merged shards keep their records and end; new records go to the one open child."""
    kinesis, name = stream
    children = _split(kinesis, name, "shardId-000000000000")
    placed = _put(kinesis, name, 100)
    kinesis.merge_shards(StreamName=name, ShardToMerge=children[0], AdjacentShardToMerge=children[1])
    merged = [s for s, d in _shards(kinesis, name).items() if d.get("AdjacentParentShardId")]
    assert len(merged) == 1
    later = _put(kinesis, name, 100)
    assert {shard for shard, _ in later.values()} <= {merged[0], "shardId-000000000001"}
    for child in children:
        records, last = _read(kinesis, name, child)
        assert sorted(records) == sorted((i, seq) for i, (shard, seq) in placed.items() if shard == child)
        assert [c["ShardId"] for c in last["ChildShards"]] == merged
        assert sorted(last["ChildShards"][0]["ParentShards"]) == children


def test_records_put_during_a_split_are_stored_exactly_once(stream: tuple[Any, str]) -> None:
    """PutRecords racing a split: every record is in exactly one shard, at the place it was told."""
    kinesis, name = stream
    placed = _put(kinesis, name, 500)
    racing: dict[str, tuple[str, str]] = {}

    def writer() -> None:
        client = boto3.client("kinesis")
        for _ in range(8):
            racing.update(_put(client, name, 250))

    thread = threading.Thread(target=writer)
    thread.start()
    _split(kinesis, name, "shardId-000000000000")
    thread.join()
    placed |= racing
    stored: Counter[str] = Counter()
    for shard in _shards(kinesis, name):
        records, _ = _read(kinesis, name, shard)
        stored.update(i for i, _ in records)
        assert all(placed[i] == (shard, seq) for i, seq in records)
    assert stored == Counter(placed.keys())


# -- moto's internals ------------------------------------------------------------------------------

# moto <= 5.2.5 kept a Kinesis record's arrival as epoch seconds; 5.2.6 made it a datetime.
_OLD_MOTO = """
import time
from moto.kinesis import models
from metering.cli import main

original = models.Record.__init__
def epoch_seconds(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self.created_at = time.time()
models.Record.__init__ = epoch_seconds
main(["local-aws", "--self-check"])
"""


def test_the_self_check_passes_on_the_locked_moto() -> None:
    """`metering local-aws --self-check` passes with the moto the lock installs."""
    check = subprocess.run([sys.executable, "-m", "metering.cli", "local-aws", "--self-check"], check=False)
    assert check.returncode == 0


def test_a_moto_that_moved_its_internals_is_named_in_one_clear_line() -> None:
    """A moto whose Kinesis records changed type (5.2.5 -> 5.2.6 did) fails the self-check, and with it
    `metering local-aws`, in one line naming the step: the suite stops on it before any test runs."""
    check = subprocess.run([sys.executable, "-c", _OLD_MOTO], capture_output=True, text=True, check=False)
    assert check.returncode == 1
    assert (
        check.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "metering: the emulator is broken: moto 5.2.6 fails at 'put and read records': AttributeError"
        )
    ), check.stderr
