"""Concurrency test of the shared rate limit: many containers, one key, one window.

DynamoDB applies a conditional update atomically per item; moto does not (its condition check and
write interleave between threads: 60 of a limit of 50 got through in a trial). `AtomicItems` restores
DynamoDB's guarantee around moto, so the test checks our use of it: separate containers with their own
local state, one shared counter, never more than the limit.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from authorizer.decision import Reason
from authorizer.ratelimit import Limits, RateLimiter
from consumer.testing import FakeClock
from tests.authorizer.conftest import LIMITS_TABLE, Aws

CONTAINERS = 16
ATTEMPTS_PER_CONTAINER = 25
SLACK = 0  # the conditional update is atomic per window: documented slack is zero within a window


class AtomicItems:
    """A DynamoDB client whose calls are serialized, as DynamoDB serializes writes to one item."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        call = getattr(self._client, name)

        def serialized(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return call(*args, **kwargs)

        return serialized


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than usual, to give races every chance to show."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.parametrize(("per_second", "per_minute"), [(50, 2000), (400, 120)])
def test_limit_holds_across_concurrent_containers(
    aws: Aws, fast_switching: None, per_second: int, per_minute: int
) -> None:
    """16 containers racing 400 requests never get more than the limit of one window allowed."""
    clock = FakeClock()
    limits = Limits(per_second=per_second, per_minute=per_minute)
    results: list[Reason | None] = []
    lock = threading.Lock()
    start = threading.Barrier(CONTAINERS)
    dynamodb = AtomicItems(aws.dynamodb)

    def container() -> None:
        limiter = RateLimiter(dynamodb, LIMITS_TABLE, clock)  # one limiter per container
        start.wait()
        for _ in range(ATTEMPTS_PER_CONTAINER):
            refusal = limiter.acquire("racekey00001", limits)
            with lock:
                results.append(refusal.reason if refusal else None)

    threads = [threading.Thread(target=container) for _ in range(CONTAINERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    allowed = results.count(None)
    expected = min(per_second, per_minute, CONTAINERS * ATTEMPTS_PER_CONTAINER)
    assert expected <= allowed <= expected + SLACK
    refused_reason = Reason.RATE_LIMIT_SECOND if per_second < per_minute else Reason.RATE_LIMIT_MINUTE
    assert set(results) == {None, refused_reason}
