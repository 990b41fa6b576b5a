"""Test doubles and builders shipped with the consumer (as `structlog.testing`), for tests and benchmarks.

`event` builds a usage event v1 dict, `kcl_record` one record of the KCL protocol, `ScriptedDaemon`
plays the MultiLangDaemon's side of the protocol to drive the real `KCLProcess` from memory, and
`FakeClock` is a monotonic clock that moves only when told; `RecordingDeadLetters` and
`RecordingPublisher` keep what the processor sends in memory.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from amazon_kclpy import kcl


def event(
    event_type: str = "API_CALL",
    at: datetime | None = None,
    email: str | None = "alice@example.com",
    ip: str = "203.0.113.7",
    **extra: Any,
) -> dict[str, Any]:
    at = at or datetime(2026, 11, 24, 17, 52, 13, 123000, tzinfo=UTC)
    return {
        "version": 1,
        "eventId": str(uuid.uuid4()),
        "eventType": event_type,
        "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "environment": "test",
        "userEmail": email,
        "apiKeyId": "key_123" if email else None,
        "httpMethod": "GET",
        "resourcePath": "/items/{id}",
        "path": "/items/42",
        "sourceIp": ip,
        "userAgent": "pytest",
        "requestId": str(uuid.uuid4()),
        "reason": None,
    } | extra


def encode(payload: dict[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


ARRIVED_MILLIS = 1795564800000  # 2026-11-25T00:00:00Z


def kcl_record(
    sequence: int, data: bytes, sub_sequence: int = 0, arrived: int | None = ARRIVED_MILLIS
) -> dict[str, Any]:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": "pk",
        "sequenceNumber": str(sequence),
        "subSequenceNumber": sub_sequence,
        "approximateArrivalTimestamp": arrived,  # None: the daemon writes null when it has none
    }


def access_log_line(at: datetime | None = None, **fields: str) -> dict[str, str]:
    """An API Gateway access-log line in the stage's format: every value a string, `-` for none."""
    at = at or datetime(2026, 11, 24, 17, 52, 13, 123000, tzinfo=UTC)
    return {
        "requestId": str(uuid.uuid4()),
        "requestTimeEpoch": str(int(at.timestamp() * 1000)),
        "httpMethod": "GET",
        "resourcePath": "/items/{id}",
        "stage": "prod",
        "status": "200",
        "responseLatency": "41",
        "integrationLatency": "35",
        "sourceIp": "203.0.113.7",
        "userEmail": "alice@example.com",
        "apiKeyId": "key_123",
        "errorType": "-",  # the backend answered
        "path": "/prod/items/42",  # `$context.path` carries the stage, which the consumer strips
    } | fields


def log_envelope(*messages: str, message_type: str = "DATA_MESSAGE", **fields: Any) -> dict[str, Any]:
    """A CloudWatch Logs subscription envelope with one log event per message (an access-log line)."""
    return {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/apigateway/usage-prod",
        "logStream": "0123456789abcdef0123456789abcdef",
        "subscriptionFilters": ["usage-to-kinesis"],
        "logEvents": [
            {
                "id": str(38_000_000_000 * 10**45 + index),
                "timestamp": 1_795_000_000_000 + index,
                "message": message,
            }
            for index, message in enumerate(messages)
        ],
    } | fields


def subscription_record(document: dict[str, Any] | list[Any] | bytes) -> bytes:
    """A Kinesis record's data as a CloudWatch Logs subscription writes it: the gzip of the envelope."""
    data = document if isinstance(document, bytes) else json.dumps(document, separators=(",", ":")).encode()
    return gzip.compress(data, mtime=0)  # the same bytes each run: test ids agree across xdist workers


LogEvent = tuple[int, bytes]


class RecordingDeadLetters:
    """The processor's dead letters, kept in memory: `sent` holds (sequence, log event, error)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, Any]] = []
        self.flushed = 0

    @property
    def reasons(self) -> list[str]:
        return [str(error.reason) for _, _, error in self.sent]

    def send(
        self, shard_id: str, record: Any, error: Any, log_event: tuple[int, bytes] | None = None
    ) -> None:
        self.sent.append((record.sequence_number, None if log_event is None else log_event[0], error))

    def flush(self) -> None:
        self.flushed = len(self.sent)


class RecordingPublisher:
    """The processor's CloudWatch publisher, kept in memory: `samples` in the order put."""

    def __init__(self) -> None:
        self.samples: list[Any] = []

    def put(self, samples: Any) -> None:
        self.samples.extend(samples)

    def close(self, timeout: float) -> None:
        pass

    def total(self, metric: str) -> float:
        return float(sum(sample.value * sample.count for sample in self.samples if sample.metric == metric))


class FakeClock:
    """A clock (`time.monotonic`'s shape) that moves only when the test sets `now`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedDaemon:
    """Feeds protocol lines to a record processor and answers its checkpoint requests.

    It plays the daemon's part: every `checkpoint` action the processor writes is recorded and
    answered at once (optionally with an error), as the real daemon does over stdin.
    """

    def __init__(self, checkpoint_error: str | None = None) -> None:
        self._lines: deque[str] = deque()
        self.checkpoints: list[tuple[str | None, int | None]] = []
        self.statuses: list[str] = []
        self.checkpoint_error = checkpoint_error
        self.stderr = io.StringIO()

    # -- the file interface KCLProcess uses --------------------------------------------------
    def readline(self) -> str:
        return self._lines.popleft() if self._lines else ""

    def write(self, text: str) -> None:
        for line in filter(None, (part.strip() for part in text.split("\n"))):
            self._answer(json.loads(line))

    def flush(self) -> None:
        pass

    # -- scripting ---------------------------------------------------------------------------
    def initialize(self, shard_id: str, sequence: str = "TRIM_HORIZON") -> ScriptedDaemon:
        return self._send(
            {"action": "initialize", "shardId": shard_id, "sequenceNumber": sequence, "subSequenceNumber": 0}
        )

    def records(
        self, records: list[tuple[int, bytes]], *, at_tip: bool = False, arrived: int | None = ARRIVED_MILLIS
    ) -> ScriptedDaemon:
        """One poll's records; `at_tip` when they reach the end of what the shard holds now."""
        return self._send(
            {
                "action": "processRecords",
                "millisBehindLatest": 0 if at_tip else 1000,
                "records": [kcl_record(seq, data, arrived=arrived) for seq, data in records],
            }
        )

    def shutdown_requested(self) -> ScriptedDaemon:
        return self._send({"action": "shutdownRequested"})

    def shard_ended(self) -> ScriptedDaemon:
        return self._send({"action": "shardEnded"})

    def lease_lost(self) -> ScriptedDaemon:
        return self._send({"action": "leaseLost"})

    def run(self, processor: Any) -> None:
        kcl.KCLProcess(processor, input_file=self, output_file=self, error_file=self.stderr).run()

    @property
    def last_checkpoint(self) -> str | None:
        return self.checkpoints[-1][0] if self.checkpoints else None

    def _send(self, message: dict[str, Any]) -> ScriptedDaemon:
        self._lines.append(json.dumps(message) + "\n")
        return self

    def _answer(self, message: dict[str, Any]) -> None:
        if message["action"] == "status":
            self.statuses.append(message["responseFor"])
        elif message["action"] == "checkpoint":
            if self.checkpoint_error is None:
                self.checkpoints.append((message["sequenceNumber"], message["subSequenceNumber"]))
            reply = {
                "action": "checkpoint",
                "sequenceNumber": message["sequenceNumber"],
                "subSequenceNumber": message["subSequenceNumber"],
                "error": self.checkpoint_error,
            }
            self._lines.appendleft(json.dumps(reply) + "\n")


_T = TypeVar("_T")


def chunks(items: list[_T], sizes: list[int]) -> list[list[_T]]:
    """`items` cut into consecutive polls of the given sizes, repeated in turn (the last may be short)."""
    cut: list[list[_T]] = []
    i = 0
    while i < len(items):
        size = sizes[len(cut) % len(sizes)]
        cut.append(items[i : i + size])
        i += size
    return cut
