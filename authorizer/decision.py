"""The outcome of authorizing one request (pure data)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    ALLOWED = "ALLOWED"
    AUTH_FAILED = "AUTH_FAILED"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"


class Reason(StrEnum):
    MISSING_KEY = "MISSING_KEY"
    MALFORMED_KEY = "MALFORMED_KEY"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    REVOKED_KEY = "REVOKED_KEY"
    RATE_LIMIT_SECOND = "RATE_LIMIT_SECOND"
    RATE_LIMIT_MINUTE = "RATE_LIMIT_MINUTE"
    KEY_STORE_UNAVAILABLE = "KEY_STORE_UNAVAILABLE"
    RATE_LIMIT_MISCONFIGURED = "RATE_LIMIT_MISCONFIGURED"


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    email: str
    plan: str


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    caller: Caller | None = None
    reason: Reason | None = None
    retry_after_seconds: int | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED
