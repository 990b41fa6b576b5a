"""Fault injection with the real KCL daemon: every scenario must count nothing twice and lose nothing.

Each test compares every contract item with ground truth (`differences`) and prints the events
counted twice and lost, summed over the GLOBAL hour items (every event is in exactly one).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest

from consumer.core.flush import Position
from consumer.daemon import STOP_MARGIN_SECONDS
from consumer.settings import ConsumerSettings
from consumer.sinks.dead_letters import queue_url
from metering.commands import dlq
from metering.commands.provision import provision
from metering.emulator import free_port, local_env, wait_until_listening
from tests.integration.conftest import Stack
from tests.integration.fault_proxy import FaultProxy
from tests.integration.test_pipeline import (
    actual_items,
    expected_items,
    make_events,
    put_events,
    wait_exact,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def report(scenario: str, stack: Stack, events: list[dict[str, Any]]) -> None:
    """Print duplicates and losses, measured on the GLOBAL hour items."""
    expected, actual = expected_items(events), actual_items(stack)
    duplicates = lost = 0
    for key, want in expected.items():
        if key[0] != "GLOBAL" or not key[1].startswith("HOUR#"):
            continue
        for name in ("calls", "authFailures", "rateLimited"):
            got = int(actual.get(key, {}).get(name, {}).get("N", "0"))
            duplicates += max(0, got - want[name])
            lost += max(0, want[name] - got)
    print(f"\n[{scenario}] events={len(events)} counted twice={duplicates} lost={lost}")


def restart_until_exact(stack: Stack, events: list[dict[str, Any]], scenario: str) -> None:
    """Start a fresh consumer after a fault, wait for exact counts, report, stop it."""
    restarted = stack.start_consumer("restarted")
    try:
        wait_exact(stack, events, restarted)
        report(scenario, stack, events)
    finally:
        restarted.stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def numeric_checkpoints(stack: Stack) -> dict[str, str]:
    return {shard: c for shard, c in stack.checkpoints().items() if c.isdigit()}


def in_background(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_kill_9_of_the_whole_consumer_mid_flush(stack: Stack) -> None:
    """A SIGKILL of every process between two item writes of a flush: the restart is exact."""
    events = make_events(3000, seed=11)
    put_events(stack, events)
    crashing = stack.start_consumer(METERING_FAULT="item-written@25:kill-group")
    assert crashing.process.wait(120) == -9, crashing.log_tail()
    # The crash left a flush recorded but not checkpointed: a half-applied range.
    intents, checkpoints = stack.intents(), stack.checkpoints()
    assert any(_position(end) != checkpoints.get(shard) for shard, end in intents.items())
    restart_until_exact(stack, events, "kill -9 mid-flush")


def test_record_processor_child_killed_mid_batch(stack: Stack) -> None:
    """One processor child dies mid-batch; the daemon stops; after a restart the counts are exact."""
    events = make_events(3000, seed=12)
    put_events(stack, events)
    crashing = stack.start_consumer(METERING_FAULT="record-added@700:kill-self")
    code = crashing.process.wait(120)
    assert code != 0, "a dead child must take the consumer down so it is restarted"
    restart_until_exact(stack, events, "child killed mid-batch")


def test_sigterm_flushes_and_checkpoints_within_the_grace_period(stack: Stack) -> None:
    """SIGTERM during traffic: exit 0 within the grace period, every processed record checkpointed."""
    stack.env["SHUTDOWN_GRACE_SECONDS"] = "15"
    consumer = stack.start_consumer()
    wait_for(lambda: bool(stack.checkpoints()), 60, "leases")
    events = make_events(6000, seed=13)
    producer = in_background(put_events, stack, events, 1000.0)
    wait_for(lambda: bool(numeric_checkpoints(stack)), 60, "a first checkpoint")
    stopped = time.monotonic()
    assert consumer.stop(timeout=40) == 0, consumer.log_tail()
    shutdown = time.monotonic() - stopped
    print(f"\n[SIGTERM] graceful shutdown took {shutdown:.1f} s (grace 15 s)")
    assert shutdown < 15 + 5
    # Everything flushed was checkpointed: each shard's checkpoint is its last flush's end.
    intents, checkpoints = stack.intents(), stack.checkpoints()
    assert all(_position(end) == checkpoints[shard] for shard, end in intents.items())
    producer.join()
    restart_until_exact(stack, events, "SIGTERM during traffic")


@pytest.fixture
def failing_kinesis(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """An emulator of its own whose Kinesis answers 500 while the flag file exists: its env, the flag."""
    port, flag = free_port(), tmp_path / "kinesis-fails"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.failing_emulator",
            "--port",
            str(port),
            "--flag",
            str(flag),
        ],
        start_new_session=True,
    )
    try:
        wait_until_listening(port, process=server)
        yield local_env(port) | {"AWS_DEFAULT_REGION": "us-east-1"}, flag
    finally:
        server.terminate()
        server.wait(10)


def test_sigterm_while_kinesis_answers_500_still_stops_within_the_bound(
    failing_kinesis: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """Kinesis failing every request (HTTP 500) while the consumer stops: `metering consume` exits
    within SHUTDOWN_GRACE_SECONDS + STOP_MARGIN_SECONDS of SIGTERM, whatever the JVM is doing."""
    aws, flag = failing_kinesis
    env = aws | {
        "ENVIRONMENT": f"stop-{uuid.uuid4().hex[:8]}",
        "FLUSH_INTERVAL_SECONDS": "1",
        "METRICS_PORT": "0",
        "SHUTDOWN_GRACE_SECONDS": "10",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws.items():
            patch.setenv(name, value)
        stack = Stack(ConsumerSettings.from_env(env), env, tmp_path)
        provision(stack.settings, report=lambda _line: None)
        with stack:
            events = make_events(200, seed=21)
            put_events(stack, events)
            consumer = stack.start_consumer()
            wait_exact(stack, events, consumer)
            flag.touch()
            time.sleep(5)  # every poll fails meanwhile
            stopped = time.monotonic()
            code = consumer.stop(timeout=60)
            took = time.monotonic() - stopped
    print(
        f"\n[stop with Kinesis at 500] exit {code} after {took:.1f} s (bound 10 + {STOP_MARGIN_SECONDS:g} s)"
    )
    assert took < 10 + STOP_MARGIN_SECONDS + 3, consumer.log_tail()
    assert code in (0, 1)


def _healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return int(reply.status), json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_healthz_fails_while_kinesis_cannot_be_read_and_recovers_exactly(
    failing_kinesis: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """Every GetRecords failing (HTTP 500, as moto 5.2.6 did): no record waits unflushed, yet /healthz
    turns 503 "not polling" after HEALTH_POLL_SECONDS; once Kinesis answers it is 200 and counts exact."""
    aws, flag = failing_kinesis
    port = free_port()
    env = aws | {
        "ENVIRONMENT": f"poll-{uuid.uuid4().hex[:8]}",
        "FLUSH_INTERVAL_SECONDS": "1",
        "WRITE_RETRY_SECONDS": "3",
        "HEALTH_POLL_SECONDS": "10",
        "METRICS_PORT": str(port),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws.items():
            patch.setenv(name, value)
        stack = Stack(ConsumerSettings.from_env(env), env, tmp_path)
        provision(stack.settings, report=lambda _line: None)
        with stack:
            events = make_events(200, seed=22)
            put_events(stack, events)
            consumer = stack.start_consumer()
            wait_exact(stack, events, consumer)
            assert _healthz(port)[0] == 200
            flag.touch()
            failed = time.monotonic()
            wait_for(lambda: _healthz(port)[0] == 503, 60, "/healthz 503")
            _, body = _healthz(port)
            print(f"\n[Kinesis at 500] /healthz 503 after {time.monotonic() - failed:.0f} s: {body}")
            assert body["status"] == "not polling" and body["not_polling"] and not body["stalled"], body
            flag.unlink()
            more = make_events(200, seed=23)
            put_events(stack, more)
            wait_for(lambda: _healthz(port)[0] == 200, 60, "/healthz 200 again")
            wait_exact(stack, events + more, consumer)
            assert consumer.stop() == 0, consumer.log_tail()


def test_two_workers_share_shards_and_survive_losing_one(stack: Stack) -> None:
    """Two workers split the shards; one is killed; the other takes its leases and finishes exactly.

    The one killed is the worker that is not the KCL's leader: the leader assigns the dead worker's
    leases once they expire (failoverTimeMillis). A dead leader is replaced only when its DynamoDB
    lock expires, about two minutes later, and then the same takeover follows: the counting side
    is the same, the suite's budget is not."""
    workers = {
        "worker-1": stack.start_consumer("w1", KCL_WORKER_ID="worker-1"),
    }
    wait_for(lambda: bool(stack.leases()), 60, "leases")
    workers["worker-2"] = stack.start_consumer("w2", KCL_WORKER_ID="worker-2")
    events = make_events(8000, seed=14)
    producer = in_background(put_events, stack, events, 400.0)
    try:
        wait_for(lambda: _owners(stack) == set(workers), 120, "both workers to own a shard")
        leader = _leader(stack) or "worker-1"  # the first to start takes the lock
        print(f"\n[two workers] leases split: {_lease_owners(stack)}; leader {_leader(stack)}")
        survivor, victim = leader, next(w for w in workers if w != leader)
        workers[victim].kill_hard()
        wait_for(lambda: _owners(stack) == {survivor}, 120, f"{survivor} to take every lease")
        producer.join()
        wait_exact(stack, events, workers[survivor])
        report(f"two workers, {victim} killed", stack, events)
    finally:
        for consumer in workers.values():
            if consumer.process.poll() is None:
                consumer.stop()


def _leader(stack: Stack) -> str | None:
    """The worker holding the KCL's leader lock (the coordinator-state table's lock item), if any."""
    table = f"{stack.settings.application_name}-CoordinatorState"
    try:
        items = stack.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    except stack.dynamodb.exceptions.ResourceNotFoundException:
        return None
    owners = [item["ownerName"]["S"] for item in items if "ownerName" in item]
    return owners[0] if len(owners) == 1 else None


def test_split_and_merge_while_events_flow(stack: Stack) -> None:
    """A split, then a merge of its children, with events flowing: every shard of the lineage is
    read to its end by its own processor, and the counts are exact."""
    consumer = stack.start_consumer()
    events = make_events(6000, seed=15)
    try:
        put_events(stack, events[:2000])
        wait_for(lambda: bool(numeric_checkpoints(stack)), 60, "a first checkpoint")
        producer = in_background(put_events, stack, events[2000:5000], 500.0)
        parent = _shards(stack)[0]
        low, high = (
            int(parent["HashKeyRange"]["StartingHashKey"]),
            int(parent["HashKeyRange"]["EndingHashKey"]),
        )
        stack.kinesis.split_shard(
            StreamName=stack.settings.stream_name,
            ShardToSplit=parent["ShardId"],
            NewStartingHashKey=str((low + high) // 2),
        )
        _wait_active(stack)
        children = [s for s in _shards(stack) if s.get("ParentShardId") == parent["ShardId"]]
        assert len(children) == 2
        time.sleep(3)
        stack.kinesis.merge_shards(
            StreamName=stack.settings.stream_name,
            ShardToMerge=children[0]["ShardId"],
            AdjacentShardToMerge=children[1]["ShardId"],
        )
        _wait_active(stack)
        producer.join()
        put_events(stack, events[5000:])  # the merged shard gets records of its own
        wait_exact(stack, events, consumer)
        wait_for(lambda: _lineage_done(stack), 60, "every closed shard to be checkpointed at its end")
        lineage = _lineage(stack)
        print(f"\n[reshard] records per shard: {lineage}")
        ended = [parent["ShardId"], *(child["ShardId"] for child in children)]
        assert all(lineage[shard]["checkpoint"] == "SHARD_END" for shard in ended), lineage
        assert all(info["records"] > 0 for info in lineage.values()), lineage
        log = consumer.log_path.read_text(errors="replace").splitlines()
        for shard in lineage:
            assert _logged(log, "shard_initialized", shard), f"{shard} never had a record processor"
        for shard in ended:
            assert _logged(log, "shard_ended", shard), f"{shard} never reached its end"
        report("split and merge", stack, events)
    finally:
        consumer.stop()


def _lineage(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each shard's records, its last record's position, the last flush's end and the checkpoint."""
    intents, checkpoints = stack.intents(), stack.checkpoints()
    lineage = {}
    for shard in _shards(stack):
        shard_id = shard["ShardId"]
        sequences = _sequences(stack, shard_id)
        lineage[shard_id] = {
            "records": len(sequences),
            "last": sequences[-1] if sequences else None,
            "flushed_to": _position(intents[shard_id]) if shard_id in intents else None,
            "checkpoint": checkpoints.get(shard_id),
        }
    return lineage


def _logged(lines: list[str], event: str, shard: str) -> bool:
    return any(f'"event":"{event}"' in line and f'"shard":"{shard}"' in line for line in lines)


def _lineage_done(stack: Stack) -> bool:
    """Every shard's records were flushed by its own processor up to its last one; closed shards ended."""
    closed = {s["ShardId"] for s in _shards(stack) if "EndingSequenceNumber" in s["SequenceNumberRange"]}
    return all(
        info["flushed_to"] == info["last"] and (shard not in closed or info["checkpoint"] == "SHARD_END")
        for shard, info in _lineage(stack).items()
    )


def _sequences(stack: Stack, shard_id: str) -> list[str]:
    iterator = stack.kinesis.get_shard_iterator(
        StreamName=stack.settings.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    sequences: list[str] = []
    while iterator:
        reply = stack.kinesis.get_records(ShardIterator=iterator, Limit=10000)
        sequences += [record["SequenceNumber"] for record in reply["Records"]]
        if not reply["Records"]:
            break
        iterator = reply.get("NextShardIterator")
    return sequences


def test_dynamodb_outage_mid_stream(stack: Stack, aws_env: dict[str, str]) -> None:
    """DynamoDB unreachable for ~20 s: nothing checkpointed past unwritten counts; exact after."""
    proxy = FaultProxy(urlparse(aws_env["AWS_ENDPOINT_URL"]).port or 0)
    consumer = stack.start_consumer(AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{proxy.port}")
    events = make_events(6000, seed=16)
    try:
        producer = in_background(put_events, stack, events, 200.0)
        wait_for(lambda: bool(numeric_checkpoints(stack)), 90, "a first checkpoint")
        proxy.cut()
        before = stack.checkpoints()
        time.sleep(20)
        # The lease table is behind the proxy too: no checkpoint can move while writes fail.
        assert stack.checkpoints() == before
        proxy.restore()
        producer.join()
        wait_exact(stack, events, consumer)
        report("DynamoDB outage 20 s", stack, events)
    finally:
        consumer.stop()
        proxy.close()


def test_sqs_outage_mid_stream_is_ridden_out(stack: Stack, aws_env: dict[str, str]) -> None:
    """SQS unreachable ~12 s while poison records arrive, and CloudWatch unreachable throughout: the
    consumer rides it out without exiting; no checkpoint passes an unsent dead letter; afterwards
    every count is exact, every letter queued. A CloudWatch outage costs metrics, never counts."""
    proxy = FaultProxy(urlparse(aws_env["AWS_ENDPOINT_URL"]).port or 0)
    cloudwatch = FaultProxy(urlparse(aws_env["AWS_ENDPOINT_URL"]).port or 0)
    cloudwatch.cut()
    consumer = stack.start_consumer(
        AWS_ENDPOINT_URL_SQS=f"http://127.0.0.1:{proxy.port}",
        AWS_ENDPOINT_URL_CLOUDWATCH=f"http://127.0.0.1:{cloudwatch.port}",
        METRICS_PUBLISH_SECONDS="5",
    )
    events = make_events(3000, seed=17)
    poison = [(b"not json, poison %d" % n, f"poison-{n}") for n in range(6)]
    try:
        put_events(stack, events[:1000])
        wait_for(lambda: bool(numeric_checkpoints(stack)), 90, "a first checkpoint")
        proxy.cut()
        _put_raw(stack, poison[:3])
        producer = in_background(put_events, stack, events[1000:], 300.0)
        time.sleep(12)
        assert consumer.process.poll() is None, "an SQS outage within WRITE_RETRY_SECONDS must not stop it"
        proxy.restore()
        _put_raw(stack, poison[3:])
        producer.join()
        wait_exact(stack, events, consumer)
        wait_for(lambda: len(_dead_lettered(stack)) == len(poison), 60, "every poison record in the DLQ")
        assert _dead_lettered(stack) == {data for data, _ in poison}
        assert "dead_letter_retry" in consumer.log_path.read_text(errors="replace")
        wait_for(
            lambda: "metrics_not_published" in consumer.log_path.read_text(errors="replace"),
            60,
            "the publisher to give a batch up",
        )
        report("SQS outage 12 s, CloudWatch down throughout", stack, events)
    finally:
        consumer.stop()
        proxy.close()
        cloudwatch.close()


def _put_raw(stack: Stack, records: list[tuple[bytes, str]]) -> None:
    entries = [{"Data": data, "PartitionKey": key} for data, key in records]
    assert (
        stack.kinesis.put_records(StreamName=stack.settings.stream_name, Records=entries)["FailedRecordCount"]
        == 0
    )


def _dead_lettered(stack: Stack) -> set[bytes]:
    sqs: Any = boto3.client("sqs", region_name="us-east-1")
    listed = dlq.list_dead_letters(sqs, queue_url(sqs, stack.settings.dlq_name), limit=1000, wait_seconds=0)
    return {record.letter.data for record in listed.records.values()}


def _position(end_key: str) -> str:
    return Position.from_key(end_key).sequence


def _lease_owners(stack: Stack) -> dict[str, str]:
    return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S", "") for i in stack.leases()}


def _owners(stack: Stack) -> set[str]:
    return set(_lease_owners(stack).values()) - {""}


def _shards(stack: Stack) -> list[dict[str, Any]]:
    return list(stack.kinesis.list_shards(StreamName=stack.settings.stream_name)["Shards"])


def _wait_active(stack: Stack) -> None:
    stack.kinesis.get_waiter("stream_exists").wait(
        StreamName=stack.settings.stream_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
