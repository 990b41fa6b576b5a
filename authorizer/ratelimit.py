"""Per-user rate limits shared by every Lambda container, in DynamoDB.

All of a user's active keys share one allowance: the window is the user's (a hash of the canonical
email, so the table holds no email), checked against the presenting key's plan. One item per user
and minute holds the minute's count and one count per second. A single conditional `UpdateItem`
adds 1 to both only if neither limit is reached, so the check and the increment are one atomic
step across all containers: a window's count never exceeds its limit. Refused requests are not
counted. Fixed windows allow a burst of up to twice a limit across a window boundary, and containers'
clocks (NTP, a few ms apart) decide which window a request near a boundary falls in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from authorizer.decision import Reason
from authorizer.errors import RateLimitMisconfigured, RateLimitUnavailable
from contract.aws import aws_error_code, is_configuration_error
from contract.events import canonical_email

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

EXPIRY_GRACE_SECONDS = 120  # items outlive their minute briefly; DynamoDB TTL deletes them later
WINDOW_EXPIRY_ATTRIBUTE = "expires_at"


def user_identity(email: str) -> str:
    """Whose window a request counts in: the user's, by a hash of the canonical email (no PII stored)."""
    return "u#" + hashlib.sha256(canonical_email(email).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Limits:
    per_second: int
    per_minute: int


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Reason
    retry_after_seconds: int


class RateLimiter:
    """Shared fixed-window limiter; also remembers refusals locally until their window ends.

    Once a window is full it stays full, so denying locally until it ends is exact and spares
    DynamoDB a write per refused request. Not thread-safe: one instance per container.
    """

    def __init__(self, client: DynamoDBClient, table: str, clock: Callable[[], float]) -> None:
        self._client = client
        self._table = table
        self._clock = clock
        self._blocked: dict[str, tuple[float, Reason]] = {}

    def check_table(self) -> None:
        """At cold start: `RateLimitMisconfigured` if the table is missing or not ours to use.

        A transient failure proves nothing either way and is left to the requests.
        """
        try:
            self._client.describe_table(TableName=self._table)
        except ClientError as exc:
            if is_configuration_error(exc):
                raise RateLimitMisconfigured(
                    f"RATE_LIMIT_TABLE_NAME={self._table!r}: {aws_error_code(exc)}"
                ) from exc
        except BotoCoreError:
            return

    def acquire(self, identity: str, limits: Limits) -> Refusal | None:
        """Count one request of `identity`, or return why it is refused.

        Raises `RateLimitUnavailable` (transient: the caller fails open) or `RateLimitMisconfigured`.
        """
        now = self._clock()
        blocked = self._blocked.get(identity)
        if blocked is not None:
            if now < blocked[0]:
                return Refusal(blocked[1], _retry_after(blocked[0], now))
            del self._blocked[identity]
        refusal_reason = self._try_increment(identity, limits, now)
        if refusal_reason is None:
            return None
        window_end = _window_end(now, 60 if refusal_reason is Reason.RATE_LIMIT_MINUTE else 1)
        self._blocked[identity] = (window_end, refusal_reason)
        return Refusal(refusal_reason, _retry_after(window_end, now))

    def _try_increment(self, identity: str, limits: Limits, now: float) -> Reason | None:
        minute = int(now // 60)
        second_attribute = f"s{int(now) % 60:02d}"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"{identity}#{minute}"}},
                UpdateExpression="SET #exp = if_not_exists(#exp, :exp) ADD #min :one, #sec :one",
                ConditionExpression="(attribute_not_exists(#min) OR #min < :min_limit) AND "
                "(attribute_not_exists(#sec) OR #sec < :sec_limit)",
                ExpressionAttributeNames={
                    "#exp": WINDOW_EXPIRY_ATTRIBUTE,
                    "#min": "n",
                    "#sec": second_attribute,
                },
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":exp": {"N": str((minute + 1) * 60 + EXPIRY_GRACE_SECONDS)},
                    ":min_limit": {"N": str(limits.per_minute)},
                    ":sec_limit": {"N": str(limits.per_second)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                return _which_limit(exc, limits)
            if is_configuration_error(exc):
                raise RateLimitMisconfigured(f"{self._table}: {aws_error_code(exc)}") from exc
            raise RateLimitUnavailable(f"{self._table}: {aws_error_code(exc) or exc}") from exc
        except BotoCoreError as exc:
            raise RateLimitUnavailable(f"{self._table}: {exc}") from exc
        return None


def _which_limit(exc: ClientError, limits: Limits) -> Reason:
    # the old item, thanks to ReturnValuesOnConditionCheckFailure
    item: dict[str, Any] = getattr(exc, "response", {}).get("Item") or {}
    minute_count = int(item.get("n", {}).get("N", "0"))
    return Reason.RATE_LIMIT_MINUTE if minute_count >= limits.per_minute else Reason.RATE_LIMIT_SECOND


def _window_end(now: float, width: int) -> float:
    return (math.floor(now / width) + 1) * width


def _retry_after(window_end: float, now: float) -> int:
    return max(1, math.ceil(window_end - now))
