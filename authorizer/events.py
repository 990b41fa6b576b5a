"""Usage events, contract version 1 (pure): building, partition keys and encoding.

Never carries the presented key: only the key's id, and only once the key was found.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from authorizer.decision import Decision, Outcome
from authorizer.request import Request

MAX_PARTITION_KEY_CHARS = 256
EVENT_TYPES = {
    Outcome.ALLOWED: "API_CALL",
    Outcome.AUTH_FAILED: "API_AUTH_FAILED",
    Outcome.RATE_LIMITED: "API_RATE_LIMITED",
    Outcome.UNAVAILABLE: "API_AUTH_FAILED",
}


def build_event(
    decision: Decision,
    request: Request,
    environment: str,
    now: float,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> dict[str, Any]:
    caller = decision.caller
    return {
        "version": 1,
        "eventId": str(new_id()),
        "eventType": EVENT_TYPES[decision.outcome],
        "timestamp": rfc3339_millis(now),
        "environment": environment,
        "userEmail": caller.email if caller else None,
        "apiKeyId": caller.key_id if caller else None,
        "httpMethod": request.http_method,
        "resourcePath": request.resource_path,
        "path": request.path,
        "sourceIp": request.source_ip,
        "userAgent": request.user_agent,
        "requestId": request.request_id,
        "reason": decision.reason.value if decision.reason else None,
    }


def partition_key(event: dict[str, Any]) -> str:
    """One user's events share a shard (per-user ordering); unknown callers spread by source IP."""
    email = event.get("userEmail")
    if isinstance(email, str):
        return hashlib.sha256(email.lower().encode()).hexdigest()[:32]
    source_ip = event.get("sourceIp")
    return source_ip[:MAX_PARTITION_KEY_CHARS] if isinstance(source_ip, str) else "unknown"


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339_millis(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
