"""`metering simulate`: drive the real Lambda authorizer in-process with API Gateway requests.

Each simulated user gets a real key through the key store (as `metering keys create` does); a few
hot users on the free plan hit their rate limits; a share of requests carries a missing, malformed
or unknown key. Keys created here are revoked at the end. Secrets passed with `--key` (made with
`metering keys create`) join the traffic as they are and are left untouched.

Each request also gets the access-log line API Gateway would write for it (`contract.access_logs`):
per-route lognormal latencies, some 4xx and 5xx from the backend, 401/429/500 where the authorizer
refused or failed. The lines go to the access-log group `metering provision` made, through
PutLogEvents in batches once a second, and its subscription delivers them to the stream.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from authorizer.errors import KeyStoreUnavailable
from authorizer.keys import generate_key
from consumer import aws
from consumer.core.access_logs import MISSING
from consumer.settings import ConsumerSettings
from contract import access_logs
from contract.aws import aws_error_code
from contract.environment import access_log_group
from metering.errors import usage_error

HOT_USERS = 3
BAD_KEY_SHARE = 0.05
STAGE = "prod"


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # the route template
    path: str  # `{n}` becomes a number
    median_ms: float  # of the backend's latency, lognormal
    client_errors: tuple[float, tuple[int, ...]]  # share of allowed calls answered 4xx, and which
    server_errors: float  # share answered 5xx


ROUTES = [
    Route("GET", "/items/{id}", "/items/{n}", 35, (0.06, (404,)), 0.01),
    Route("POST", "/items", "/items", 120, (0.05, (400, 409, 422)), 0.02),
    Route("GET", "/search", "/search", 240, (0.02, (400,)), 0.03),
    Route("GET", "/v1/usage", "/v1/usage", 45, (0.0, ()), 0.005),
]
ROUTE_OF = {(route.method, route.resource): route for route in ROUTES}
LATENCY_SIGMA = 0.6  # lognormal spread: p99 is ~4x the median
OVERHEAD_MEDIAN_MS = 18  # API Gateway plus the authorizer's invocation (its cache is off)
INTEGRATION_TIMEOUT_MS = 29_000  # API Gateway's limit: a 504 takes that long
LOG_FLUSH_SECONDS = 1.0  # API Gateway delivers access logs within seconds
# PutLogEvents: at most 10,000 events and 1 MiB a batch, each event counting 26 bytes more.
MAX_BATCH_EVENTS, MAX_BATCH_BYTES, EVENT_OVERHEAD_BYTES = 10_000, 1_048_576, 26


@dataclass
class Summary:
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    seconds: float = 0.0
    log_lines: int | None = None  # access-log lines written; None: there was no group to write to
    log_lines_failed: int = 0

    def describe(self) -> str:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        logs = (
            "no access-log group (metering provision makes it)"
            if self.log_lines is None
            else f"access-log lines written {self.log_lines}, failed {self.log_lines_failed}"
        )
        return (
            f"simulated {sum(self.outcomes.values())} requests in {self.seconds:.1f} s ({outcomes}); "
            f"usage events sent {self.sent}, failed {self.failed}, dropped {self.dropped}; {logs}"
        )


@dataclass(frozen=True)
class SimUser:
    email: str
    key_id: str
    secret: str


def simulate(
    settings: ConsumerSettings,
    *,
    rate: float,
    duration: float,
    users: int,
    keys: Sequence[str] = (),
    seed: int | None = None,
) -> Summary:
    from authorizer import handler, keystore

    os.environ.setdefault("ENABLE_KINESIS_ANALYTICS", "true")
    # The emulator can stall for a second under load; real Kinesis keeps the tight default.
    os.environ.setdefault("KINESIS_READ_TIMEOUT_SECONDS", "2")
    # The Lambda prints two EMF lines per request; here they would bury the summary.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    if users < 1 and not keys:
        raise usage_error("simulate: nothing to simulate: give --users above 0 or at least one --key")
    handler.reset()
    rng = random.Random(seed)
    # Responses draw from their own generator: a seed gives the same requests with or without them.
    responses = random.Random(None if seed is None else f"responses-{seed}")
    dynamodb = aws.client("dynamodb", settings.region)
    created: list[SimUser] = []
    try:  # whatever was created is revoked, even if creating the rest or the run fails
        _create_users(dynamodb, settings.api_keys_table, users, keystore, created)
        log = AccessLog.open(aws.client("logs", settings.region), access_log_group(settings.environment))
        secrets = [user.secret for user in created] + list(keys)
        return _run(handler, rng, responses, secrets, rate=rate, duration=duration, log=log)
    finally:
        for user in created:
            keystore.revoke_key(dynamodb, settings.api_keys_table, user.key_id)


def _run(
    handler: Any,
    rng: random.Random,
    responses: random.Random,
    secrets: list[str],
    *,
    rate: float,
    duration: float,
    log: AccessLog | None,
) -> Summary:
    weights = [10.0 if i < HOT_USERS else 1.0 for i in range(len(secrets))]
    summary = Summary()
    started = time.monotonic()
    try:
        for n in range(int(rate * duration)):
            _pace(started, n / rate)
            request = _request(rng, secrets, weights)
            received_ms = int(time.time() * 1000)
            request["requestContext"]["requestTimeEpoch"] = received_ms  # as API Gateway sends it
            outcome, context = _outcome(handler, request)
            summary.outcomes[outcome] += 1
            if log is not None:
                log.add(received_ms, access_log_line(responses, request, received_ms, outcome, context))
    except KeyboardInterrupt:
        pass  # stopping early is normal: report what was sent
    finally:
        with contextlib.suppress(TimeoutError):  # the stats below say what is still pending
            handler.drain(timeout_s=30)
        stats = handler.producer_stats()
        summary.sent, summary.failed, summary.dropped = stats.sent, stats.failed, stats.dropped
        if log is not None:
            summary.log_lines, summary.log_lines_failed = log.close()
        summary.seconds = time.monotonic() - started
    return summary


def _create_users(dynamodb: Any, table: str, count: int, keystore: Any, into: list[SimUser]) -> None:
    """Appends each user as soon as its key exists, so the caller can revoke a partial population."""
    for i in range(count):
        email = f"user{i:03d}@example.com"
        plan = "free" if i < HOT_USERS else "pro"
        key_id, secret = keystore.create_key(dynamodb, table, email, plan, time.time)
        into.append(SimUser(email, key_id, secret))


def _request(rng: random.Random, secrets: list[str], weights: list[float]) -> dict[str, Any]:
    route = rng.choice(ROUTES)
    method, resource, path = route.method, route.resource, route.path
    headers = {"user-agent": "metering-simulate/1.0"}
    roll = rng.random()
    if roll < BAD_KEY_SHARE / 3:
        pass  # no key at all
    elif roll < 2 * BAD_KEY_SHARE / 3:
        headers["x-api-key"] = "not-a-key"
    elif roll < BAD_KEY_SHARE:
        headers["x-api-key"] = generate_key()[1]  # well-formed, never stored: unknown
    else:
        headers["x-api-key"] = rng.choices(secrets, weights)[0]
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:simapi/{STAGE}/{method}{resource}",
        "resource": resource,
        "path": path.replace("{n}", str(rng.randint(1, 999))),
        "httpMethod": method,
        "headers": headers,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": f"198.51.100.{rng.randint(1, 40)}", "userAgent": headers["user-agent"]},
        },
    }


def _outcome(handler: Any, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What the authorizer decided, and the context it gave API Gateway (none if it raised)."""
    try:
        response = handler.lambda_handler(request, None)
    except handler.Unauthorized:
        return "unauthorized", {}
    except KeyStoreUnavailable:
        return "key_store_unavailable", {}
    effect = response["policyDocument"]["Statement"][0]["Effect"]
    return ("allowed" if effect == "Allow" else "rate_limited"), response.get("context", {})


def _pace(started: float, offset: float) -> None:
    delay = started + offset - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# -- access logs ---------------------------------------------------------------------------------

# What API Gateway answers itself when the authorizer refuses or fails (ecs/api-gateway.yaml), and
# the gateway response it logs (`$context.error.responseType`); a backend's 504 is its timeout's.
REFUSED_STATUS = {"unauthorized": 401, "rate_limited": 429, "key_store_unavailable": 500}
RESPONSE_TYPE = {
    "unauthorized": "UNAUTHORIZED",
    "rate_limited": "ACCESS_DENIED",
    "key_store_unavailable": "AUTHORIZER_FAILURE",
}


def access_log_line(
    rng: random.Random, request: dict[str, Any], received_ms: int, outcome: str, context: dict[str, Any]
) -> str:
    """The line API Gateway would write for this request, in the stage's format."""
    status, integration_ms = _response(rng, ROUTE_OF[request["httpMethod"], request["resource"]], outcome)
    overhead_ms = max(1, round(rng.lognormvariate(math.log(OVERHEAD_MEDIAN_MS), LATENCY_SIGMA / 2)))
    identity = request["requestContext"]["identity"]
    return access_logs.line(
        {
            "requestId": request["requestContext"]["requestId"],
            "requestTimeEpoch": str(received_ms),
            "httpMethod": request["httpMethod"],
            "resourcePath": request["resource"],
            "path": f"/{STAGE}{request['path']}",
            "stage": STAGE,
            "status": str(status),
            "responseLatency": str(overhead_ms + (integration_ms or 0)),
            "integrationLatency": MISSING if integration_ms is None else str(integration_ms),
            "sourceIp": identity["sourceIp"],
            "userEmail": str(context.get("userEmail", MISSING)),
            "apiKeyId": str(context.get("apiKeyId", MISSING)),
            "errorType": RESPONSE_TYPE.get(outcome, "INTEGRATION_TIMEOUT" if status == 504 else MISSING),
        }
    )


def _response(rng: random.Random, route: Route, outcome: str) -> tuple[int, int | None]:
    """The status and the backend's latency (None: no backend call, the authorizer answered)."""
    if outcome in REFUSED_STATUS:
        return REFUSED_STATUS[outcome], None
    latency = max(1, round(rng.lognormvariate(math.log(route.median_ms), LATENCY_SIGMA)))
    roll = rng.random()
    if roll < route.server_errors:
        status = rng.choice((502, 503, 504))  # 504: the backend never answered
        return status, (INTEGRATION_TIMEOUT_MS + rng.randint(0, 50) if status == 504 else latency)
    client_share, client_statuses = route.client_errors
    if roll < route.server_errors + client_share:
        return rng.choice(client_statuses), latency
    return (201 if route.method == "POST" else 200), latency


class AccessLog:
    """Lines for one log stream, put in batches by a background thread (PutLogEvents, once a second)."""

    def __init__(self, logs: Any, group: str, stream: str) -> None:
        self._logs, self._group, self._stream = logs, group, stream
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.written = self.failed = 0
        self._thread = threading.Thread(target=self._every_second, name="access-log", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, logs: Any, group: str) -> AccessLog | None:
        """A writer to a new stream of `group`; None if the group does not exist (not provisioned)."""
        stream = f"simulate-{uuid.uuid4().hex}"
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except ClientError as exc:
            if aws_error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return cls(logs, group, stream)

    def add(self, at_ms: int, line: str) -> None:
        with self._lock:
            self._pending.append({"timestamp": at_ms, "message": line})

    def close(self) -> tuple[int, int]:
        """Put what is pending; (lines written, lines that failed)."""
        self._stop.set()
        self._thread.join()
        self._flush()
        return self.written, self.failed

    def _every_second(self) -> None:
        while not self._stop.wait(LOG_FLUSH_SECONDS):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for batch in _batches(sorted(pending, key=lambda event: event["timestamp"])):
            try:
                self._logs.put_log_events(
                    logGroupName=self._group, logStreamName=self._stream, logEvents=batch
                )
                self.written += len(batch)
            except (BotoCoreError, ClientError):  # counted in the summary; the traffic goes on
                self.failed += len(batch)


def _batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The events in order, in batches within PutLogEvents' limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(event["message"].encode()) + EVENT_OVERHEAD_BYTES
        if batch and (len(batch) == MAX_BATCH_EVENTS or size + event_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event_size
    if batch:
        yield batch
