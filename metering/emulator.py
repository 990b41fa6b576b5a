"""The embedded AWS emulator (`metering local-aws`, dev extra): moto's WSGI app served by hypercorn.

hypercorn speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one port: boto3 uses the
former, the KCL's Netty-based Kinesis client insists on the latter, which moto's own server lacks.

Where moto must behave like AWS for our guarantees to be tested, it is corrected here.

**Atomic requests.** moto serves each request on its own thread and does not lock its models: an
`UpdateItem` is a read-modify-write, so two concurrent `ADD`s to one item can both read the old
value (8 threads x 300 conditional `ADD`s gave 2,399), and two `PutRecords` calls to one shard can
hand out one sequence number twice. AWS applies every request atomically. `AtomicRequests`
serialises the requests of each service (by the service of the request's SigV4 signature), except
SQS, whose `ReceiveMessage` long polls would otherwise hold every other request of the service.

**Resharding.** moto's `SplitShard` empties the parent and puts its records again, and its shard
lookup keeps choosing the closed parent, so new records go on landing in the parent, under new
sequence numbers, while the children stay empty; its `GetRecords` never ends a closed shard. Kinesis
does the opposite, and the KCL relies on it: after a split or merge, records already in a parent stay
there once, new records go to the open children, and `GetRecords` on a parent read to its end
returns no next iterator and the `ChildShards` (the KCL refuses a null iterator without them).

**moto's internals.** Both corrections replace methods of moto's own classes and read their fields:
`moto.kinesis.models.Stream` (`shards`, `get_shard`, `split_shard`, `merge_shards`,
`get_shard_for_key`), `Shard` (`_shard_id`, `starting_hash`, `ending_hash`, `is_open`, `parent`,
`adjacent_parent`, `records` as an ordered dict numbered 1, 2, 3..., `get_records`), `Record.created_at`
(a datetime since moto 5.2.6; epoch seconds before), `KinesisResponse.get_records`,
`moto.kinesis.utils.decompose_shard_iterator`, `moto.core.responses.ActionResult`. A moto release may
change any of them: `self_check()` drives every replaced path through boto3 in-process and names what
broke. `metering local-aws` runs it before it serves, and the test suite before its first test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from consumer.errors import MeteringError

DEFAULT_PORT = 4566
# moto needs credentials to sign with; these are only ever sent to 127.0.0.1.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# SQS long polls (ReceiveMessage with WaitTimeSeconds) must not hold the other SQS requests.
UNSERIALISED = frozenset({"sqs"})
# CloudWatch Logs delivers subscribed log events to Kinesis inside PutLogEvents.
LOCK_OF = {"logs": "kinesis"}


class EmulatorBroken(MeteringError):
    """moto no longer behaves as the corrections here assume (a new release changed its internals)."""


def serve(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
    """Serve until SIGINT/SIGTERM (blocking); refuses to start if `self_check()` fails."""
    self_check()
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config
    from moto.server import DomainDispatcherApplication, create_backend_app  # type: ignore[attr-defined]

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    patch_kinesis()
    app = AtomicRequests(DomainDispatcherApplication(create_backend_app))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.set_exception_handler(_ignore_cancelled_connections)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait, mode="wsgi")

    asyncio.run(main())


def _ignore_cancelled_connections(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    # CPython 3.11.7 logs a traceback for every connection still open at shutdown (gh-113538).
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def wait_until_listening(
    port: int,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait for the port to accept connections; `process`, the server, ending first is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if process is not None and process.poll() is not None:
            code = process.returncode
            raise EmulatorBroken(f"the local AWS emulator exited with code {code} before listening")
        time.sleep(0.1)
    raise TimeoutError(f"the local AWS emulator did not listen on {host}:{port} within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_env(port: int) -> dict[str, str]:
    """Environment variables that point boto3 (and through it, the KCL) at the emulator."""
    return FAKE_CREDENTIALS | {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }


@contextlib.contextmanager
def running(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start the emulator in a child process for the duration of a block."""
    process = subprocess.Popen(
        [sys.executable, "-m", "metering.cli", "local-aws", "--port", str(port)], start_new_session=True
    )
    try:
        wait_until_listening(port, process=process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- AWS behaviour moto lacks ----------------------------------------------------------------------
class AtomicRequests:
    """WSGI middleware: one request at a time per AWS service, whole (the response body included)."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service = signing_service(environ)
        if service in UNSERIALISED:
            return self._app(environ, start_response)
        with self._lock(LOCK_OF.get(service, service)):
            body = self._app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

    def _lock(self, service: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(service, threading.Lock())


def signing_service(environ: dict[str, Any]) -> str:
    """The service a request was signed for (`Credential=<key>/<date>/<region>/<service>/aws4_request`)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION", ""))
    _, found, credential = authorization.partition("Credential=")
    if found:
        scope = credential.split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    return target.split("_", 1)[0].lower() if target else "unsigned"


# -- Kinesis resharding ---------------------------------------------------------------------------


def patch_kinesis() -> None:
    """Make moto's Kinesis split, merge, route and end shards as Kinesis does (process-wide)."""
    from moto.kinesis import models, responses

    replacements = [
        (models.Stream, "split_shard", _split_shard),
        (models.Stream, "merge_shards", _merge_shards),
        (models.Stream, "get_shard_for_key", _open_shard_for_key),
        (models.Shard, "get_max_sequence_number", _max_sequence_number),
        (models.Shard, "get_records", _records_after),
        (responses.KinesisResponse, "get_records", _get_records_response),
    ]
    for owner, name, replacement in replacements:
        setattr(owner, name, replacement)


def _split_shard(stream: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
    from moto.kinesis.exceptions import InvalidArgumentError

    parent = stream.get_shard(shard_to_split)
    split_at = int(new_starting_hash_key)
    if not parent.is_open:
        raise InvalidArgumentError(f"Shard {shard_to_split} has already been merged or split")
    if not parent.starting_hash < split_at <= parent.ending_hash:
        raise InvalidArgumentError(f"NewStartingHashKey {split_at} is outside {shard_to_split}")
    _add_child(stream, parent.starting_hash, split_at - 1, parent.shard_id)
    _add_child(stream, split_at, parent.ending_hash, parent.shard_id)
    parent.is_open = False  # its records stay where they are


def _merge_shards(stream: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
    from moto.kinesis.exceptions import InvalidArgumentError

    first, second = stream.get_shard(shard_to_merge), stream.get_shard(adjacent_shard_to_merge)
    low, high = sorted((first, second), key=lambda shard: shard.starting_hash)
    if not (first.is_open and second.is_open) or low.ending_hash + 1 != high.starting_hash:
        raise InvalidArgumentError(f"{shard_to_merge}, {adjacent_shard_to_merge}: not adjacent open shards")
    _add_child(stream, low.starting_hash, high.ending_hash, first.shard_id, second.shard_id)
    first.is_open = second.is_open = False


def _add_child(stream: Any, start: int, end: int, parent: str, adjacent_parent: str | None = None) -> None:
    from moto.kinesis.models import Shard

    number = max(shard._shard_id for shard in stream.shards.values()) + 1
    child = Shard(number, start, end, parent=parent, adjacent_parent=adjacent_parent)
    stream.shards[child.shard_id] = child


def _open_shard_for_key(stream: Any, partition_key: str, explicit_hash_key: str) -> Any:
    from moto.kinesis.exceptions import InvalidArgumentError
    from moto.utilities.utils import md5_hash

    if not isinstance(partition_key, str) or not 0 < len(partition_key) <= 256:
        raise InvalidArgumentError("partition_key")
    if explicit_hash_key:
        key = int(explicit_hash_key)
        if not 0 <= key < 2**128:
            raise InvalidArgumentError("explicit_hash_key")
    else:
        key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in stream.shards.values():  # hash key ranges are inclusive at both ends
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    raise InvalidArgumentError(f"no open shard holds hash key {key}")


def _max_sequence_number(shard: Any) -> int:
    return next(reversed(shard.records), 0)  # O(1): moto computed it from a list of every key


def _records_after(shard: Any, last_sequence_id: str, limit: int | None) -> tuple[list[Any], int, int]:
    """Up to `limit` records after a sequence number, in O(limit): moto numbers a shard 1, 2, 3..."""
    records: OrderedDict[int, Any] = shard.records
    last = int(last_sequence_id)
    found: list[Any] = []
    while (limit is None or len(found) < limit) and last + 1 in records:
        last += 1
        found.append(records[last])
    behind = 0
    if found:  # moto >= 5.2.6: created_at is a datetime
        newest = records[next(reversed(records))]
        behind = int((newest.created_at - found[-1].created_at).total_seconds() * 1000)
    return found, last, behind


def _get_records_response(response: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.kinesis.utils import decompose_shard_iterator

    backend = response.kinesis_backend
    next_iterator, records, behind = backend.get_records(
        response._get_param("StreamARN"), response._get_param("ShardIterator"), response._get_param("Limit")
    )
    stream_name, shard_id, last_read = decompose_shard_iterator(next_iterator)
    stream = backend.describe_stream(stream_arn=None, stream_name=stream_name)
    shard = stream.get_shard(shard_id)
    children: list[dict[str, Any]] = []
    if not shard.is_open and int(last_read) >= shard.get_max_sequence_number():
        next_iterator, children = None, _children(stream, shard_id)
    return ActionResult(
        {
            "NextShardIterator": next_iterator,
            "Records": [record.to_json() for record in records],
            "MillisBehindLatest": behind,
            "ChildShards": children,
        }
    )


def _children(stream: Any, shard_id: str) -> list[dict[str, Any]]:
    return [
        {
            "ShardId": child.shard_id,
            "ParentShards": [p for p in (child.parent, child.adjacent_parent) if p],
            "HashKeyRange": {
                "StartingHashKey": str(child.starting_hash),
                "EndingHashKey": str(child.ending_hash),
            },
        }
        for child in stream.shards.values()
        if shard_id in (child.parent, child.adjacent_parent)
    ]


# -- the self-check ------------------------------------------------------------------------------


def self_check() -> None:
    """Drive every path `patch_kinesis` replaces through boto3 and moto in-process (about a second).

    Raises `EmulatorBroken` naming the step and moto's version when moto's internals moved.
    """
    import boto3
    import moto
    from moto import mock_aws

    patch_kinesis()
    step = "create a stream"
    try:
        with mock_aws():
            # Explicitly AWS's endpoint, which mock_aws intercepts, whatever AWS_ENDPOINT_URL says.
            kinesis = boto3.client(
                "kinesis",
                region_name="us-east-1",
                endpoint_url="https://kinesis.us-east-1.amazonaws.com",
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
            kinesis.create_stream(StreamName="self-check", ShardCount=1)
            step = "put and read records"
            for n in range(3):
                kinesis.put_record(StreamName="self-check", Data=b"%d" % n, PartitionKey=f"key{n}")
            parent = _read(kinesis, "shardId-000000000000", limit=2)
            _expect(len(parent["Records"]) == 2 and parent["MillisBehindLatest"] >= 0, step, parent)
            step = "split a shard"
            kinesis.split_shard(
                StreamName="self-check", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
            )
            kinesis.put_record(StreamName="self-check", Data=b"child", PartitionKey="key-after-split")
            step = "read a closed parent to its end"
            ended = _read(kinesis, "shardId-000000000000")
            children = {child["ShardId"] for child in ended["ChildShards"]}
            _expect(len(ended["Records"]) == 3 and ended.get("NextShardIterator") is None, step, ended)
            _expect(children == {"shardId-000000000001", "shardId-000000000002"}, step, ended)
            step = "route a new record to an open child"
            landed = [_read(kinesis, shard)["Records"] for shard in sorted(children)]
            _expect(sum(len(records) for records in landed) == 1, step, landed)
            step = "merge the children"
            kinesis.merge_shards(
                StreamName="self-check",
                ShardToMerge="shardId-000000000001",
                AdjacentShardToMerge="shardId-000000000002",
            )
            _expect(len(_read(kinesis, "shardId-000000000001")["ChildShards"]) == 1, step, None)
    except EmulatorBroken:
        raise
    except Exception as exc:
        raise EmulatorBroken(
            f"the emulator is broken: moto {moto.__version__} fails at '{step}': {type(exc).__name__}: {exc}"
        ) from exc


def _read(kinesis: Any, shard_id: str, limit: int = 100) -> dict[str, Any]:
    iterator = kinesis.get_shard_iterator(
        StreamName="self-check", ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return dict(kinesis.get_records(ShardIterator=iterator, Limit=limit))


def _expect(holds: bool, step: str, seen: object) -> None:
    if not holds:
        import moto

        version = moto.__version__
        raise EmulatorBroken(f"the emulator is broken: moto {version} fails at '{step}': got {seen!r}")
