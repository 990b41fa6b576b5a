"""`AtomicRequests`: one request at a time per AWS service, except SQS (its long polls)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from metering.emulator import AtomicRequests, signing_service


def _signed(service: str) -> dict[str, Any]:
    credential = f"testing/20261130/us-east-1/{service}/aws4_request"
    signature = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=0"
    return {"HTTP_AUTHORIZATION": signature}


class RacyBackend:
    """A read-modify-write with a pause in the middle, as moto's UpdateItem does without a lock."""

    def __init__(self) -> None:
        self.value = 0
        self.overlaps = 0
        self._inside = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self._inside += 1
        self.overlaps += self._inside > 1
        read = self.value
        time.sleep(0.001)
        self.value = read + 1
        self._inside -= 1
        start_response("200 OK", [])
        return [b"{}"]


def _call_concurrently(app: Callable[..., Iterable[bytes]], environ: dict[str, Any], calls: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: b"".join(app(environ, lambda *_: None)), range(calls)))


def test_requests_of_one_service_are_applied_one_at_a_time() -> None:
    """Concurrent read-modify-writes behind the middleware lose nothing."""
    backend = RacyBackend()
    _call_concurrently(AtomicRequests(backend), _signed("dynamodb"), 200)
    assert (backend.value, backend.overlaps) == (200, 0)


def test_without_it_the_racy_backend_loses_updates() -> None:
    """The same load without the middleware loses updates: the test above can fail."""
    backend = RacyBackend()
    _call_concurrently(backend, _signed("dynamodb"), 200)
    assert backend.value < 200


def test_sqs_requests_are_not_serialised() -> None:
    """SQS long polls must not hold the service's other requests: SQS requests overlap."""
    backend = RacyBackend()
    _call_concurrently(AtomicRequests(backend), _signed("sqs"), 200)
    assert backend.overlaps > 0


def test_cloudwatch_logs_shares_the_kinesis_lock() -> None:
    """PutLogEvents delivers to Kinesis subscriptions, so it runs under Kinesis' lock."""
    backend = RacyBackend()
    app = AtomicRequests(backend)
    threads = [
        threading.Thread(target=_call_concurrently, args=(app, _signed(service), 100))
        for service in ("logs", "kinesis")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (backend.value, backend.overlaps) == (200, 0)


def test_the_service_comes_from_the_signature_or_the_target() -> None:
    assert signing_service(_signed("kinesis")) == "kinesis"
    assert signing_service({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.UpdateItem"}) == "dynamodb"
    assert signing_service({}) == "unsigned"
