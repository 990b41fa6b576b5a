"""Kinesis' write quotas per shard (1,000 records/s and 1 MiB/s; records over them are refused, and a
producer that drops them loses events): 10,000 events/s from many Lambda containers fit two shards,
and a keyless flood does not crowd out paying users' events."""

from __future__ import annotations

from collections import Counter

import pytest

from authorizer.producer import KinesisProducer
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings
from bench.flood import QuotaKinesis, drive
from consumer.testing import FakeClock
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, STREAM, Aws, new_key, rest_event


def test_a_keyless_flood_from_one_address_loses_no_paying_users_event(aws: Aws) -> None:
    """3,000 keyless requests from one IP and 200 paying calls in the same second, on two shards, one
    event per record (the quota must be exceeded, or this tests nothing)."""
    clock = FakeClock()  # Kinesis' second: moves only while the producer waits to retry
    kinesis = QuotaKinesis(clock)
    producer = KinesisProducer(
        kinesis, STREAM, retry_seconds=2, batch_events=1, sleep=clock.advance, monotonic=clock
    )
    settings = AuthorizerSettings(
        environment="test", stream_name=STREAM, api_keys_table=KEYS_TABLE, rate_limit_table=LIMITS_TABLE
    )
    authorizer = Authorizer(settings, dynamodb=aws.dynamodb, producer=producer)
    secrets = [new_key(aws, email=f"user{i}@example.com", plan="enterprise")[1] for i in range(20)]
    flood = rest_event({}, requestContext={"requestId": "flood", "identity": {"sourceIp": "198.51.100.66"}})
    paying = 0
    for i in range(3200):
        if i % 16 == 15:
            authorizer.handle(rest_event({"x-api-key": secrets[paying % 20]}))
            paying += 1
        else:
            authorizer.handle(flood)
    assert producer.flush(30)
    stats = producer.stats()
    stored = kinesis.stored()
    calls = [e for e in stored if e["eventType"] == "API_CALL"]
    print(
        f"\n[flood] refused over quota {kinesis.refused}, retried {stats.retried}, stored {len(calls)} calls"
    )
    assert kinesis.refused > 0, "the flood must exceed the quota, or this tests nothing"
    assert paying == 200 and len(calls) == 200 and len({e["eventId"] for e in calls}) == 200
    assert (stats.failed, stats.dropped, len(stored)) == (0, 0, 3200)
    # The flood itself spreads over the shards instead of filling one (it came from one address).
    flood_per_shard = Counter(e["shard"] for e in stored if e["userEmail"] is None)
    assert min(flood_per_shard.values()) > 0.4 * sum(flood_per_shard.values()), flood_per_shard


# -- 10,000 events/s from many containers into two shards -------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("containers", [100, 500])
def test_ten_thousand_events_a_second_from_many_containers_fit_two_shards(containers: int) -> None:
    """The real producer in each of `containers` Lambda containers, paced at 10,000 events/s in all
    for 6 s, into two shards enforcing both quotas: the stream holds exactly the events the producers
    report sent, none twice, and every event is sent or counted as failed or dropped, whatever this
    machine's speed. Whether 10,000/s fits without a refusal is a figure: bench/flood.py reports the
    rate and the refusals (500 producer threads on two cores bunch their sends; Lambda's do not).

    100 containers (an authorizer of ~10 ms at 10,000/s) fill their batches (25 events); 500 (~50 ms)
    send theirs when a second old: the records a shard receives are then (containers) / linger."""
    run = drive(containers)
    print(f"\n[10k/s] {run.describe()}")
    stored = run.kinesis.stored()
    sent = sum(s.sent for s in run.stats)
    assert sent + sum(s.failed + s.dropped for s in run.stats) == len(run.events)
    assert sent == len(stored) and sum(s.pending for s in run.stats) == 0
    stored_ids = [e["eventId"] for e in stored]
    assert len(set(stored_ids)) == len(stored_ids)
    assert set(stored_ids) <= {e["eventId"] for e in run.events}
    # One user, one shard: a flush range then holds all of a user's events.
    shards_of: dict[str, set[int]] = {}
    for counted in stored:
        if counted["userEmail"]:
            shards_of.setdefault(counted["userEmail"], set()).add(counted["shard"])
    assert len(shards_of) == 1000 and all(len(shards) == 1 for shards in shards_of.values())
