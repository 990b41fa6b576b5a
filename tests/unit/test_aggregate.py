"""Bucketing and aggregation of events into the analytics table's items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson

from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.testing import event
from contract.table import expiry

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _aggregate(*payloads: dict[str, object]) -> Aggregate:
    aggregate = Aggregate()
    for payload in payloads:
        aggregate.add(decode_event(orjson.dumps(payload), NOW))
    return aggregate


def test_one_call_touches_user_global_and_ip_items() -> None:
    """A known user's call counts in all-time, minute, hour, global and IP items."""
    items = _aggregate(event()).items
    assert set(items) == {
        ("USER#alice@example.com", "TOTAL"),
        ("USER#alice@example.com", "MINUTE#2026-11-24T17:52"),
        ("USER#alice@example.com", "HOUR#2026-11-24T17"),
        ("GLOBAL", "MINUTE#2026-11-24T17:52"),
        ("GLOBAL", "HOUR#2026-11-24T17"),
        ("IP#203.0.113.7", "HOUR#2026-11-24T17"),
    }
    assert all(c.calls == 1 for c in items.values())


def test_unknown_user_counts_only_in_global_and_ip() -> None:
    """An event without a user never creates a USER item."""
    items = _aggregate(event("API_AUTH_FAILED", email=None)).items
    assert {pk for pk, _ in items} == {"GLOBAL", "IP#203.0.113.7"}
    assert all(c.auth_failures == 1 and c.calls == 0 for c in items.values())


def test_minute_and_hour_edges() -> None:
    """59.999 s and 0.000 s fall in different minutes; 59:59.999 and 00:00 in different hours."""
    before = datetime(2026, 11, 24, 17, 59, 59, 999000, tzinfo=UTC)
    after = before + timedelta(milliseconds=1)
    items = _aggregate(event(at=before), event(at=after)).items
    assert items[("GLOBAL", "MINUTE#2026-11-24T17:59")].calls == 1
    assert items[("GLOBAL", "MINUTE#2026-11-24T18:00")].calls == 1
    assert items[("GLOBAL", "HOUR#2026-11-24T17")].calls == 1
    assert items[("GLOBAL", "HOUR#2026-11-24T18")].calls == 1
    total = items[("USER#alice@example.com", "TOTAL")]
    assert (total.calls, total.first_seen, total.last_seen) == (2, before, after)


def test_buckets_use_utc_whatever_the_offset() -> None:
    """A timestamp with an offset is bucketed by its UTC instant."""
    at = datetime(2026, 11, 24, 19, 30, tzinfo=timezone(timedelta(hours=2)))
    items = _aggregate(event(at=at, timestamp="2026-11-24T19:30:00.000+02:00")).items
    assert ("GLOBAL", "MINUTE#2026-11-24T17:30") in items


def test_counts_each_type_in_its_own_counter() -> None:
    """API_CALL, API_AUTH_FAILED and API_RATE_LIMITED land in calls, authFailures, rateLimited."""
    items = _aggregate(event(), event("API_AUTH_FAILED"), event("API_RATE_LIMITED"), event()).items
    hour = items[("USER#alice@example.com", "HOUR#2026-11-24T17")]
    assert (hour.calls, hour.auth_failures, hour.rate_limited) == (2, 1, 1)


def test_emails_are_case_insensitive() -> None:
    """Alice@Example.com and alice@example.com are one user."""
    items = _aggregate(event(email="Alice@Example.com"), event()).items
    assert items[("USER#alice@example.com", "TOTAL")].calls == 2


def test_expiry_is_bucket_start_plus_seven_days() -> None:
    """expiresAt is the bucket's start plus 7 days, in epoch seconds."""
    start = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
    assert expiry("MINUTE#2026-11-24T17:52") == int((start + timedelta(days=7)).timestamp())
    assert expiry("HOUR#2026-11-24T17") == int((start.replace(minute=0) + timedelta(days=7)).timestamp())
