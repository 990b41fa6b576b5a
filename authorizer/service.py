"""The authorizer: key check, shared rate limit, usage event, answer for API Gateway.

Everything is injected (clients, clock, producer), so tests and benchmarks build it directly;
`authorizer.handler` builds one per Lambda container from the environment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from authorizer.cache import TtlCache
from authorizer.clients import kinesis_client
from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.errors import KeyStoreUnavailable, RateLimitUnavailable
from authorizer.events import build_event
from authorizer.keys import hashes_match, parse_key
from authorizer.keystore import LAST_USED_RESOLUTION_SECONDS, KeyRecord, get_key, touch_last_used
from authorizer.policy import build_response
from authorizer.producer import KinesisProducer, NullProducer, Producer
from authorizer.ratelimit import Limits, RateLimiter
from authorizer.request import Request, parse_request
from authorizer.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

logger = logging.getLogger(__name__)
KEY_CACHE_SIZE = 10_000


class Authorizer:
    def __init__(
        self,
        settings: Settings,
        dynamodb: DynamoDBClient,
        kinesis: KinesisClient | None = None,
        clock: Callable[[], float] = time.time,
        producer: Producer | None = None,
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

    def handle(self, event: object) -> dict[str, Any]:
        """Answer one authorizer event; never raises, whatever the event holds."""
        return self.authorize(parse_request(event))[1]

    def authorize(self, request: Request) -> tuple[Decision, dict[str, Any]]:
        decision = self.decide(request)
        self.producer.emit(build_event(decision, request, self.settings.environment, self._clock()))
        if self.settings.flush_on_return_ms:
            self.producer.flush(self.settings.flush_on_return_ms / 1000)
        if not decision.allowed:
            logger.info(
                "denied outcome=%s reason=%s key_id=%s request_id=%s",
                decision.outcome,
                decision.reason,
                decision.caller.key_id if decision.caller else None,
                request.request_id,
            )
        return decision, build_response(decision, request)

    def decide(self, request: Request) -> Decision:
        if request.key_problem is not None:
            return _auth_failed(Reason(request.key_problem.value))
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
        return self._rate_limited(record, caller)

    def _rate_limited(self, record: KeyRecord, caller: Caller) -> Decision:
        try:
            refusal = self._limiter.acquire(record.key_id, Limits(record.per_second, record.per_minute))
        except RateLimitUnavailable as exc:
            # fail open: an outage of the counter table must not take the API down with it
            logger.error("rate limit unavailable, allowing key_id=%s error=%s", record.key_id, exc)
            refusal = None
        if refusal is not None:
            return Decision(
                Outcome.RATE_LIMITED, caller, refusal.reason, retry_after_seconds=refusal.retry_after_seconds
            )
        self._touch(record.key_id)
        return Decision(Outcome.ALLOWED, caller)

    def _lookup(self, key_id: str) -> KeyRecord | None:
        """Cached per container; unknown ids are remembered too, in a bounded cache."""
        record = self._keys.get(key_id)
        if record is not None or self._unknown.get(key_id):
            return record
        record = get_key(self._dynamodb, self.settings.api_keys_table, key_id)
        if record is None:
            self._unknown.put(key_id, True)
        else:
            self._keys.put(key_id, record)
        return record

    def _touch(self, key_id: str) -> None:
        if self._touched.get(key_id):
            return
        self._touched.put(key_id, True)
        try:
            touch_last_used(self._dynamodb, self.settings.api_keys_table, key_id, self._clock())
        except KeyStoreUnavailable as exc:
            logger.warning("last-used update failed key_id=%s error=%s", key_id, exc)


def _auth_failed(reason: Reason) -> Decision:
    return Decision(Outcome.AUTH_FAILED, reason=reason)


def _producer(settings: Settings, kinesis: KinesisClient | None) -> Producer:
    if not settings.analytics_enabled:
        return NullProducer()
    if kinesis is None:
        kinesis = kinesis_client(  # only built when analytics are on
            connect_timeout=settings.kinesis_connect_timeout_seconds,
            read_timeout=settings.kinesis_read_timeout_seconds,
        )
    return KinesisProducer(kinesis, settings.stream_name, settings.event_queue_size)
