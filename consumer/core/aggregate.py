"""In-memory aggregation of usage events into the analytics table's items (`contract.table`).

Buckets come from the event's own timestamp in UTC, so a replay lands in the same items as the
original run. Each event adds to: the user's all-time, minute and hour items (when the user is
known), the global minute and hour items, and the source IP's hour item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from consumer.core.events import UsageEvent
from contract.events import EventType, email_key
from contract.table import BUCKET_RETENTION, GLOBAL, TOTAL, hour_sk, ip_pk, minute_sk, user_pk

ItemKey = tuple[str, str]  # (pk, sk)


@dataclass(slots=True)
class Counters:
    calls: int = 0
    auth_failures: int = 0
    rate_limited: int = 0
    # Only all-time items carry first/last seen; bucket items carry their bucket and expiry.
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    bucket: str | None = None
    expires_at: int | None = None

    def count(self, event_type: EventType) -> None:
        if event_type is EventType.API_CALL:
            self.calls += 1
        elif event_type is EventType.API_AUTH_FAILED:
            self.auth_failures += 1
        else:
            self.rate_limited += 1

    def seen(self, at: datetime) -> None:
        self.first_seen = at if self.first_seen is None else min(self.first_seen, at)
        self.last_seen = at if self.last_seen is None else max(self.last_seen, at)


@dataclass(slots=True)
class Aggregate:
    """Counters for every item touched by a set of events."""

    items: dict[ItemKey, Counters] = field(default_factory=dict)
    events: int = 0

    def add(self, event: UsageEvent) -> None:
        at = event.timestamp.astimezone(UTC)
        minute, hour = _buckets(int(at.timestamp()) // 60)
        self.events += 1
        if event.user_email is not None:
            user = user_pk(email_key(event.user_email))
            total = self._item(user, TOTAL)
            total.count(event.event_type)
            total.seen(at)
            self._bucket(user, minute).count(event.event_type)
            self._bucket(user, hour).count(event.event_type)
        self._bucket(GLOBAL, minute).count(event.event_type)
        self._bucket(GLOBAL, hour).count(event.event_type)
        if event.source_ip:
            self._bucket(ip_pk(event.source_ip), hour).count(event.event_type)

    def _item(self, pk: str, sk: str) -> Counters:
        counters = self.items.get((pk, sk))
        if counters is None:
            counters = self.items[(pk, sk)] = Counters()
        return counters

    def _bucket(self, pk: str, bucket: tuple[str, int]) -> Counters:
        sk, expires_at = bucket
        counters = self._item(pk, sk)
        if counters.bucket is None:
            counters.bucket, counters.expires_at = sk, expires_at
        return counters


@lru_cache(maxsize=4096)
def _buckets(epoch_minute: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """The minute and hour buckets (sort key, expiry) of one minute; cached: events cluster in time."""
    minute = datetime.fromtimestamp(epoch_minute * 60, UTC)
    hour = minute.replace(minute=0)
    return (
        (minute_sk(minute), int((minute + BUCKET_RETENTION).timestamp())),
        (hour_sk(hour), int((hour + BUCKET_RETENTION).timestamp())),
    )
