"""Builders of test data shared by every tier: events, KCL protocol lines."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson


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


def kcl_record(sequence: int, data: bytes, sub_sequence: int = 0) -> dict[str, Any]:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": "pk",
        "sequenceNumber": str(sequence),
        "subSequenceNumber": sub_sequence,
        "approximateArrivalTimestamp": 1795564800000,  # 2026-11-25T00:00:00Z
    }
