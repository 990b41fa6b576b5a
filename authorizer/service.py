"""The authorizer: key check, shared rate limit, usage event, answer for API Gateway.

Everything is injected (clients, clock, producer), so tests and benchmarks build it directly;
`authorizer.handler` builds one per Lambda container from the environment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from authorizer.cache import TtlCache
from authorizer.clients import DYNAMODB_CALL_LIMIT_SECONDS, kinesis_client
from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.errors import KeyStoreUnavailable, RateLimitMisconfigured, RateLimitUnavailable
from authorizer.events import build_event
from authorizer.keys import hashes_match, parse_key
from authorizer.keystore import LAST_USED_RESOLUTION_SECONDS, KeyRecord, get_key, touch_last_used
from authorizer.metrics import (
    DECISIONS,
    HANDLER_LATENCY,
    RATE_LIMIT_FAIL_OPEN,
    Metrics,
    ProducerDeltas,
    Tally,
)
from authorizer.policy import build_response
from authorizer.producer import KinesisProducer, NullProducer, Producer, ProducerStats
from authorizer.ratelimit import Limits, RateLimiter, user_identity
from authorizer.request import ApiFormat, Request, parse_request
from authorizer.settings import AuthorizerSettings
from contract.environment import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

logger = logging.getLogger(__name__)
KEY_CACHE_SIZE = 10_000
FAIL_OPEN_LOG_EVERY = 1000
# The advisory last-used write only starts while a request is still this fast, so against a slow
# DynamoDB it is never another slow call.
TOUCH_ONLY_WITHIN_SECONDS = 0.1
# A failed key read would be a 500 for the caller, so it gets a second attempt, at once: a stalled
# connection is the usual cause, and a backoff would not fit the budget.
KEY_READ_ATTEMPTS = 2
# What DynamoDB can cost one request at worst: the key reads and the rate-limit update, one call each
# (authorizer/clients.py). Kinesis never blocks the handler.
WORST_CASE_DYNAMODB_SECONDS = (KEY_READ_ATTEMPTS + 1) * DYNAMODB_CALL_LIMIT_SECONDS


class Authorizer:
    def __init__(
        self,
        settings: AuthorizerSettings,
        dynamodb: DynamoDBClient,
        kinesis: KinesisClient | None = None,
        clock: Callable[[], float] = time.time,
        *,
        producer: Producer | None = None,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._dynamodb = dynamodb
        self._clock = clock
        self.producer = producer or _producer(settings, kinesis)
        self._keys: TtlCache[KeyRecord] = TtlCache(KEY_CACHE_SIZE, settings.key_cache_ttl_seconds, clock)
        self._unknown: TtlCache[bool] = TtlCache(
            settings.negative_cache_size, settings.negative_cache_ttl_seconds, clock
        )
        self._touched: TtlCache[bool] = TtlCache(KEY_CACHE_SIZE, LAST_USED_RESOLUTION_SECONDS, clock)
        self._limiter = RateLimiter(dynamodb, settings.rate_limit_table, clock)
        self.metrics = metrics or Tally()
        self._monotonic = monotonic  # handler latency: immune to wall-clock steps
        self._producer_deltas = ProducerDeltas()
        self._emit_failures = 0
        self._fail_opens = 0

    def check_configuration(self) -> None:
        """At cold start: a misconfigured rate-limit table stops the container (`ConfigError`)."""
        try:
            self._limiter.check_table()
        except RateLimitMisconfigured as exc:
            raise ConfigError(str(exc)) from exc

    def handle(self, event: object) -> dict[str, Any]:
        """Answer one authorizer event; never raises, whatever the event holds."""
        return self.authorize(parse_request(event))[1]

    def authorize(self, request: Request) -> tuple[Decision, dict[str, Any]]:
        started = self._monotonic()
        decision = self.decide(request)
        self._emit(decision, request)
        if not decision.allowed:
            logger.info(
                "denied outcome=%s reason=%s key_id=%s request_id=%s",
                decision.outcome,
                decision.reason,
                decision.caller.key_id if decision.caller else None,
                request.request_id,
            )
        response = build_response(decision, request)
        self._measure(decision.outcome, started)
        return decision, response

    def producer_stats(self) -> ProducerStats:
        """The producer's counters; events lost to an exception on the way in count as failed."""
        stats = self.producer.stats()
        return replace(stats, failed=stats.failed + self._emit_failures)

    def decide(self, request: Request) -> Decision:
        started = self._clock()
        problem = _request_problem(request)
        if problem is not None:
            return _auth_failed(problem)
        parsed = parse_key(request.presented_key or "")
        if parsed is None:
            return _auth_failed(Reason.MALFORMED_KEY)
        try:
            record = self._lookup(parsed.key_id)
        except KeyStoreUnavailable as exc:
            logger.error("key lookup failed key_id=%s error=%s", parsed.key_id, exc)
            return Decision(Outcome.UNAVAILABLE, reason=Reason.KEY_STORE_UNAVAILABLE)
        if record is None or not hashes_match(parsed.key_hash, record.key_hash):
            return _auth_failed(Reason.UNKNOWN_KEY)
        caller = Caller(key_id=record.key_id, email=record.email, plan=record.plan)
        if not record.active:
            return Decision(Outcome.AUTH_FAILED, caller=caller, reason=Reason.REVOKED_KEY)
        return self._rate_limited(record, caller, started)

    def _rate_limited(self, record: KeyRecord, caller: Caller, started: float) -> Decision:
        limits = Limits(record.per_second, record.per_minute)
        try:
            refusal = self._limiter.acquire(user_identity(record.email), limits)
        except RateLimitMisconfigured as exc:
            # Fail closed: a missing table or permission must not silently lift every limit.
            logger.error("rate limit misconfigured, refusing key_id=%s error=%s", record.key_id, exc)
            return Decision(Outcome.UNAVAILABLE, caller, Reason.RATE_LIMIT_MISCONFIGURED)
        except RateLimitUnavailable as exc:
            # Fail open: an outage of the counter table must not take the API down with it.
            self._fail_opens += 1
            self.metrics.add(RATE_LIMIT_FAIL_OPEN)
            if self._fail_opens % FAIL_OPEN_LOG_EVERY == 1:  # the metric counts each; the log samples
                logger.warning(
                    "rate limit unavailable, allowing: fail_opens=%d error=%s", self._fail_opens, exc
                )
            refusal = None
        if refusal is not None:
            return Decision(
                Outcome.RATE_LIMITED, caller, refusal.reason, retry_after_seconds=refusal.retry_after_seconds
            )
        self._touch(record.key_id, started)
        return Decision(Outcome.ALLOWED, caller)

    def _lookup(self, key_id: str) -> KeyRecord | None:
        """Cached per container; unknown ids are remembered too, in a bounded cache."""
        record = self._keys.get(key_id)
        if record is not None or self._unknown.get(key_id):
            return record
        # Strongly consistent: an eventual read can miss a key created a moment ago, and caching that
        # miss would refuse the new key for the whole negative TTL. A lookup happens once per key
        # and TTL per container, so the doubled read cost is small; a flood of unknown ids costs
        # one read each, less than an eventual read confirmed by a consistent one.
        record = self._read_key(key_id)
        if record is None:
            self._unknown.put(key_id, True)
        else:
            self._keys.put(key_id, record)
        return record

    def _read_key(self, key_id: str) -> KeyRecord | None:
        read = partial(get_key, self._dynamodb, self.settings.api_keys_table, key_id, consistent=True)
        try:
            return read()
        except KeyStoreUnavailable:
            return read()  # the second of KEY_READ_ATTEMPTS, at once

    def _touch(self, key_id: str, started: float) -> None:
        if self._touched.get(key_id) or self._clock() - started >= TOUCH_ONLY_WITHIN_SECONDS:
            return  # a slow request skips it; the next fast one writes it
        self._touched.put(key_id, True)
        try:
            touch_last_used(self._dynamodb, self.settings.api_keys_table, key_id, self._clock())
        except KeyStoreUnavailable as exc:
            logger.warning("last-used update failed key_id=%s error=%s", key_id, exc)

    def _emit(self, decision: Decision, request: Request) -> None:
        """Fire and forget by construction: whatever fails here costs the event, never the answer."""
        try:
            self.producer.emit(build_event(decision, request, self.settings.environment, self._clock()))
            if self.settings.flush_on_return_ms:
                self.producer.flush(self.settings.flush_on_return_ms / 1000)
        except Exception as exc:  # the handler must answer whatever the producer does
            self._emit_failures += 1
            # the type only: an exception's message may quote the event or the request behind it
            logger.warning("usage event not emitted: error=%s", type(exc).__name__)

    def _measure(self, outcome: Outcome, started: float) -> None:
        """One flush per request; whatever fails here costs the metrics, never the answer."""
        try:
            self.metrics.add(DECISIONS, dimensions=(outcome,))
            self.metrics.add(HANDLER_LATENCY, (self._monotonic() - started) * 1000)
            for metric, count in self._producer_deltas.since_last(self.producer_stats()).items():
                self.metrics.add(metric, count)
            self.metrics.flush()
        except Exception as exc:
            logger.warning("metrics not published: error=%s", type(exc).__name__)


def _request_problem(request: Request) -> Reason | None:
    """Why the request is refused before any key is looked up, if it is."""
    if request.api_format is ApiFormat.REST and request.method_arn is None:
        # API Gateway always sends the method ARN. Without it the policy could only name "*", and an
        # Allow on "*" would grant every method of the API: refuse it as a broken or forged event.
        return Reason.MALFORMED_REQUEST
    if request.key_problem is not None:
        return Reason(request.key_problem.value)
    return None


def _auth_failed(reason: Reason) -> Decision:
    return Decision(Outcome.AUTH_FAILED, reason=reason)


def _producer(settings: AuthorizerSettings, kinesis: KinesisClient | None) -> Producer:
    if not settings.analytics_enabled:
        return NullProducer()
    if kinesis is None:
        kinesis = kinesis_client(  # only built when analytics are on
            connect_timeout=settings.kinesis_connect_timeout_seconds,
            read_timeout=settings.kinesis_read_timeout_seconds,
        )
    return KinesisProducer(
        kinesis, settings.stream_name, settings.event_queue_size, retry_seconds=settings.kinesis_retry_seconds
    )
