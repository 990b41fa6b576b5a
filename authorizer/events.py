"""Usage events, contract version 1 (pure): building, partition keys and encoding.

Never carries the presented key: only the key's id, and only once the key was found.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from authorizer.decision import Decision, Outcome
from authorizer.request import Request
from contract.events import EventType, UsageEventV1, format_timestamp

# An event is stamped with the time API Gateway received its request, the time its access-log line
# carries too, so the two records of one request fall in the same minute and hour (`metering
# reconcile`). A receive time this far from the Lambda's own clock is not believed: the clock is.
MAX_RECEIVED_SKEW_SECONDS = 300
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EVENT_TYPES = {
    Outcome.ALLOWED: EventType.API_CALL,
    Outcome.AUTH_FAILED: EventType.API_AUTH_FAILED,
    Outcome.RATE_LIMITED: EventType.API_RATE_LIMITED,
    Outcome.UNAVAILABLE: EventType.API_AUTH_FAILED,
}


def build_event(
    decision: Decision,
    request: Request,
    environment: str,
    now: float,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> UsageEventV1:
    caller = decision.caller
    return {
        "version": 1,
        "eventId": str(new_id()),
        "eventType": EVENT_TYPES[decision.outcome].value,
        "timestamp": format_timestamp(event_time(request, now)),
        "environment": environment,
        "userEmail": caller.email if caller else None,
        "apiKeyId": caller.key_id if caller else None,
        "plan": caller.plan if caller else None,
        "httpMethod": request.http_method,
        "resourcePath": request.resource_path,
        "path": request.path,
        "sourceIp": request.source_ip,
        "userAgent": request.user_agent,
        "requestId": request.request_id,
        "reason": decision.reason.value if decision.reason else None,
    }


def event_time(request: Request, now: float) -> datetime:
    """API Gateway's receive time of the request (to the millisecond, as its line), or `now`
    without a believable one."""
    received = request.received_ms
    if received is not None and abs(received / 1000 - now) <= MAX_RECEIVED_SKEW_SECONDS:
        return _EPOCH + timedelta(milliseconds=received)
    return datetime.fromtimestamp(now, UTC)


def partition_key(event: UsageEventV1) -> str:
    """One user's events share a shard, so one shard at a time writes a user's items.

    Events of unknown callers are keyed by their own id: spread over every shard, so a keyless
    flood from one address cannot fill one shard's write quota and crowd out paying users' events.
    """
    email = event["userEmail"]
    if email is not None:
        return hashlib.sha256(email.lower().encode()).hexdigest()[:32]
    return event["eventId"]


def encode_event(event: UsageEventV1) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
