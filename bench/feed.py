"""Synthetic traffic as the KCL delivers it, for the memory and write benchmarks.

`Traffic` makes usage events in time order (Poisson arrivals at `rate` over `users`, each user with
its own address and key) and API Gateway access-log records of the same requests. `shard_of` splits
them over the shards as Kinesis does (MD5 of the producer's partition key over equal hash ranges).
`LazyDaemon` plays the MultiLangDaemon's side of the protocol, building each poll's line only when
the processor asks for it, so a benchmark holds one poll at a time, as a record-processor child does.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson

from authorizer.events import partition_key
from consumer.testing import FakeClock, ScriptedDaemon, access_log_line, log_envelope, subscription_record

# Not on a minute: flush windows cross minute and hour edges as a live consumer's do.
START = datetime(2026, 11, 24, 16, 59, 23, 400_000, tzinfo=UTC)
# Kinesis sequence numbers are 56 digits: their length sets the watermark's, so the items' sizes.
FIRST_SEQUENCE = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
MAX_RECORDS = 10_000  # properties/consumer.properties: maxRecords per poll
ROUTES = ("/items/{id}", "/items", "/orders/{id}", "/orders/{id}/lines", "/v1/usage")
METHODS = ("GET", "GET", "GET", "POST", "PUT")


def shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


def shard_of(key: str, shards: int) -> int:
    """The shard whose hash range holds the key: Kinesis splits MD5's 128 bits evenly at creation."""
    return int(hashlib.md5(key.encode()).hexdigest(), 16) * shards >> 128  # noqa: S324 - Kinesis' own hash


@dataclass(frozen=True, slots=True)
class Request:
    """One API request: its usage event and the shard its record lands in."""

    at: datetime
    event: dict[str, Any]
    shard: int


@dataclass(frozen=True, slots=True)
class Traffic:
    rate: float  # events per second of event time
    users: int
    seconds: float
    shards: int = 2
    rate_limited_share: float = 0.01  # refusals of known keys: KEY hour items
    unknown_share: float = 0.005  # calls without a key: IP items only, archived by address
    access_logs: bool = True  # API Gateway's access log of every request, one record per poll
    # Users call in turn, `rate * seconds` events exactly (each user `events / users` of them), all
    # within `seconds`; otherwise each call picks a user at random, until `seconds` have passed.
    in_turn: bool = False
    start: datetime = START
    seed: int = 1

    def requests(self) -> Iterator[Request]:
        """Every request in time order, Poisson arrivals at `rate` (seeded)."""
        rng = random.Random(self.seed)  # noqa: S311 - test data, not secrets
        at, count = 0.0, round(self.rate * self.seconds)
        for index in itertools.count():
            at += rng.expovariate(self.rate)
            if (index >= count) if self.in_turn else (at >= self.seconds):
                return
            user = index % self.users if self.in_turn else rng.randrange(self.users)
            event = self._event(rng, user, self.start + timedelta(seconds=min(at, self.seconds)))
            yield Request(event_time(event), event, shard_of(partition_key(cast(Any, event)), self.shards))

    def usage_events(self) -> int:
        """How many events `requests` makes (one pass over them)."""
        return sum(1 for _ in self.requests())

    def _event(self, rng: random.Random, user: int, at: datetime) -> dict[str, Any]:
        route = rng.randrange(len(ROUTES))
        draw = rng.random()
        common = {
            "version": 1,
            "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "environment": "bench",
            "httpMethod": METHODS[route],
            "resourcePath": ROUTES[route],
            "path": ROUTES[route].replace("{id}", str(rng.randrange(10_000))),
            "userAgent": "python-requests/2.32.3",
            "requestId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        }
        if draw < self.unknown_share:
            address = f"192.0.2.{rng.randrange(1, 255)}"
            return common | _caller(None, address, "API_AUTH_FAILED", "MISSING_KEY")
        kind, reason = (
            ("API_RATE_LIMITED", "RATE_LIMIT_SECOND")
            if draw > 1 - self.rate_limited_share
            else (
                "API_CALL",
                None,
            )
        )
        return common | _caller(user, user_address(user), kind, reason)


def _caller(user: int | None, address: str, kind: str, reason: str | None) -> dict[str, Any]:
    return {
        "eventType": kind,
        "userEmail": None if user is None else f"user{user}@example.com",
        "apiKeyId": None if user is None else f"key_{user:06d}",
        "plan": None if user is None else "pro",
        "sourceIp": address,
        "reason": reason,
    }


def user_address(user: int) -> str:
    """Each user calls from one address of its own (10.0.0.0/8 holds 16.7M)."""
    return f"10.{user >> 16 & 255}.{user >> 8 & 255}.{user & 255}"


def event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


def access_log_record(requests: list[Request]) -> bytes:
    """One CloudWatch Logs subscription record holding the access-log lines of `requests`."""
    lines = []
    for request in requests:
        event, refused = request.event, request.event["eventType"] != "API_CALL"
        lines.append(
            json.dumps(
                access_log_line(
                    request.at,
                    requestId=event["requestId"],
                    httpMethod=event["httpMethod"],
                    resourcePath=event["resourcePath"],
                    path=event["path"],
                    status="429" if event["eventType"] == "API_RATE_LIMITED" else "401" if refused else "200",
                    integrationLatency="-" if refused else "35",
                    sourceIp=event["sourceIp"],
                    userEmail=event["userEmail"] or "-",
                    apiKeyId=event["apiKeyId"] or "-",
                )
            )
        )
    return subscription_record(log_envelope(*lines))


Poll = list[tuple[datetime, bytes]]  # (arrival, record data)


def polls(traffic: Traffic, shard: int, every: float) -> Iterator[Poll]:
    """What one shard's reader gets every `every` seconds: the events (and the access logs, each
    poll's in one record on a shard of its own) that arrived since the last poll, at most
    `MAX_RECORDS`; quiet polls are empty, as with `callProcessRecordsEvenForEmptyRecordList`."""
    window_end = traffic.start + timedelta(seconds=every)
    poll: Poll = []
    logs: list[Request] = []
    for request in traffic.requests():
        while request.at >= window_end:
            yield from _emit(traffic, shard, poll, logs, window_end)
            poll, logs, window_end = [], [], window_end + timedelta(seconds=every)
        logs.append(request)
        if request.shard == shard:
            poll.append((request.at, orjson.dumps(request.event)))
    yield from _emit(traffic, shard, poll, logs, window_end)


def _emit(traffic: Traffic, shard: int, poll: Poll, logs: list[Request], at: datetime) -> Iterator[Poll]:
    # CloudWatch Logs puts each batch with a random partition key: any shard, chosen by its content.
    if traffic.access_logs and logs and shard_of(logs[0].event["requestId"], traffic.shards) == shard:
        poll.append((at, access_log_record(logs)))
    for start in range(0, max(len(poll), 1), MAX_RECORDS):
        yield poll[start : start + MAX_RECORDS]


def protocol(
    shard: str, polls: Iterable[Poll], before_poll: Callable[[], None], before_tip: Callable[[], None]
) -> Iterator[dict[str, Any]]:
    """The daemon's messages to one shard's processor: initialize, every poll, an empty poll at the
    tip (so a flush that came due goes out), then shutdownRequested (which flushes the rest)."""
    yield {"action": "initialize", "shardId": shard, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}
    taken = 0
    for poll in polls:
        before_poll()
        yield _process_records(poll, taken, at_tip=False)
        taken += len(poll)
    before_tip()
    yield _process_records([], taken, at_tip=True)
    yield {"action": "shutdownRequested"}


class LazyDaemon(ScriptedDaemon):
    """`ScriptedDaemon` whose protocol lines are built when read: one poll in memory at a time.

    Each poll moves `clock` (the processor's monotonic clock) by `every` seconds, so the processor
    flushes on the schedule it would keep against a live stream; the tip poll comes `tail` later.
    """

    def __init__(
        self, shard: str, polls: Iterable[Poll], clock: FakeClock, every: float, tail: float
    ) -> None:
        super().__init__()
        self.taken = 0  # records fed so far
        self._messages = protocol(
            shard, self._counted(polls), lambda: clock.advance(every), lambda: clock.advance(tail)
        )

    def readline(self) -> str:
        if self._lines:
            return self._lines.popleft()
        message = next(self._messages, None)
        return "" if message is None else json.dumps(message) + "\n"

    def _counted(self, polls: Iterable[Poll]) -> Iterator[Poll]:
        for poll in polls:
            yield poll
            self.taken += len(poll)


def _process_records(poll: Poll, taken: int, *, at_tip: bool) -> dict[str, Any]:
    return {
        "action": "processRecords",
        "millisBehindLatest": 0 if at_tip else 1000,
        "records": [
            {
                "action": "record",
                "data": base64.b64encode(data).decode(),
                "partitionKey": "pk",
                "sequenceNumber": str(FIRST_SEQUENCE + taken + index),
                "subSequenceNumber": 0,
                "approximateArrivalTimestamp": int(at.timestamp() * 1000),
            }
            for index, (at, data) in enumerate(poll)
        ],
    }


def run_shard(
    traffic: Traffic,
    shard: int,
    make_processor: Callable[[FakeClock], Any],
    *,
    every: float,
    tail: float,
) -> LazyDaemon:
    """Feed one shard's polls to a processor through `consumer.kcl_protocol.KCLProcess`."""
    from consumer.kcl_protocol import KCLProcess

    clock = FakeClock()
    processor = make_processor(clock)
    daemon = LazyDaemon(shard_id(shard), polls(traffic, shard, every), clock, every, tail)
    KCLProcess(processor, input_file=daemon, output_file=daemon, error_file=daemon.stderr).run()
    if daemon.stderr.getvalue():
        raise RuntimeError(daemon.stderr.getvalue()[-2000:])
    return daemon
