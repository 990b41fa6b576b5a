"""Bucketing and aggregation of events into the analytics table's items and archive pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson

from consumer.core.access_logs import decode_access_log_line
from consumer.core.aggregate import Aggregate
from consumer.core.archive import pack, unpack
from consumer.core.events import decode_event
from consumer.core.routes import Routes
from consumer.testing import access_log_line, event
from contract.table import KEYS_TRIED, USERS_SEEN, expiry, user_minutes

NOW = datetime(2026, 11, 25, tzinfo=UTC)
ALICE = "USER#alice@example.com"


def _aggregate(*payloads: dict[str, object], routes: Routes | None = None) -> Aggregate:
    aggregate = Aggregate(routes or Routes())
    for payload in payloads:
        data = orjson.dumps(payload)
        aggregate.add(decode_event(data, NOW + timedelta(days=10)), data)
    return aggregate


def test_one_call_touches_every_rollup_of_its_user_the_globals_and_its_ip() -> None:
    """A known user's call counts in all-time, hour (with its minute), day, month, global and IP items."""
    items = _aggregate(event()).items
    buckets = {"HOUR#2026-11-24T17", "DAY#2026-11-24", "MONTH#2026-11"}
    assert set(items) == (
        {(ALICE, "TOTAL")}
        | {(ALICE, sk) for sk in buckets}
        | {("GLOBAL", sk) for sk in buckets | {"MINUTE#2026-11-24T17:52"}}
        | {("IP#203.0.113.7", "HOUR#2026-11-24T17")}
    )
    assert all(update.adds["calls"] == 1 for update in items.values())
    assert items[(ALICE, "HOUR#2026-11-24T17")].adds["c52"] == 1  # no item per user and minute
    assert [key for key, update in items.items() if update.active] == [
        (ALICE, "HOUR#2026-11-24T17"),
        (ALICE, "DAY#2026-11-24"),
        (ALICE, "MONTH#2026-11"),
    ]


def test_a_users_minutes_are_counters_of_its_hour_item() -> None:
    """`c07`, `a07`, `r07` (contract.table.minute_counter): read back by `user_minutes`."""
    at = datetime(2026, 11, 24, 17, 7, 30, tzinfo=UTC)
    events = [event(at=at), event(at=at), event("API_RATE_LIMITED", at=at, reason="RATE_LIMIT_SECOND")]
    events.append(event(at=at + timedelta(minutes=52)))  # 17:59
    adds = _aggregate(*events).items[(ALICE, "HOUR#2026-11-24T17")].adds
    assert (adds["c07"], adds["r07"], adds["c59"], adds["calls"], adds["rateLimited"]) == (2, 1, 1, 3, 1)
    assert user_minutes(adds) == {7: {"calls": 2, "rateLimited": 1}, 59: {"calls": 1}}
    assert user_minutes({"calls": 3, "c5": 1, "cab": 2, "x07": 1, "e_GET /c07": 4}) == {}


def test_unknown_user_counts_only_in_global_and_ip() -> None:
    """An event without a user never creates a USER item; its refusal is counted by reason."""
    items = _aggregate(event("API_AUTH_FAILED", email=None, reason="MISSING_KEY")).items
    assert {pk for pk, _ in items} == {"GLOBAL", "IP#203.0.113.7"}
    assert all(update.adds.get("calls", 0) == 0 for update in items.values())
    assert items[("IP#203.0.113.7", "HOUR#2026-11-24T17")].adds["r_MISSING_KEY"] == 1
    assert items[("GLOBAL", "HOUR#2026-11-24T17")].adds["r_MISSING_KEY"] == 1


def test_minute_and_hour_edges() -> None:
    """59.999 s and 0.000 s fall in different minutes; 59:59.999 and 00:00 in different hours."""
    before = datetime(2026, 11, 24, 17, 59, 59, 999000, tzinfo=UTC)
    after = before + timedelta(milliseconds=1)
    items = _aggregate(event(at=before), event(at=after)).items
    assert items[("GLOBAL", "MINUTE#2026-11-24T17:59")].adds["calls"] == 1
    assert items[("GLOBAL", "MINUTE#2026-11-24T18:00")].adds["calls"] == 1
    assert items[("GLOBAL", "HOUR#2026-11-24T17")].adds["calls"] == 1
    assert items[("GLOBAL", "HOUR#2026-11-24T18")].adds["calls"] == 1
    assert items[("GLOBAL", "DAY#2026-11-24")].adds["calls"] == 2
    total = items[(ALICE, "TOTAL")]
    assert (total.adds["calls"], total.first_seen, total.last_seen) == (2, before, after)


def test_a_month_boundary_splits_days_and_months() -> None:
    """23:59:59.999 on the 30th of November and midnight on the 1st of December."""
    before = datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)
    items = _aggregate(event(at=before), event(at=before + timedelta(milliseconds=1))).items
    assert items[(ALICE, "MONTH#2026-11")].adds["calls"] == items[(ALICE, "MONTH#2026-12")].adds["calls"] == 1
    assert (
        items[("GLOBAL", "DAY#2026-11-30")].adds["calls"] == items[("GLOBAL", "DAY#2026-12-01")].adds["calls"]
    )


def test_buckets_use_utc_whatever_the_offset() -> None:
    """A timestamp with an offset is bucketed by its UTC instant."""
    at = datetime(2026, 11, 24, 19, 30, tzinfo=timezone(timedelta(hours=2)))
    items = _aggregate(event(at=at, timestamp="2026-11-24T19:30:00.000+02:00")).items
    assert ("GLOBAL", "MINUTE#2026-11-24T17:30") in items


def test_counts_each_type_in_its_own_counter() -> None:
    """API_CALL, API_AUTH_FAILED and API_RATE_LIMITED land in calls, authFailures, rateLimited."""
    items = _aggregate(event(), event("API_AUTH_FAILED"), event("API_RATE_LIMITED"), event()).items
    hour = items[(ALICE, "HOUR#2026-11-24T17")].adds
    assert (hour["calls"], hour["authFailures"], hour["rateLimited"]) == (2, 1, 1)


def test_emails_are_case_insensitive() -> None:
    """Alice@Example.com and alice@example.com are one user."""
    items = _aggregate(event(email="Alice@Example.com"), event()).items
    assert items[(ALICE, "TOTAL")].adds["calls"] == 2


def test_methods_and_endpoints_per_hour_for_the_user_and_globally() -> None:
    """The user's hour item and the GLOBAL hour item count calls by method and by endpoint."""
    routes = Routes(("/items/{id}",))
    items = _aggregate(
        event(),
        event(httpMethod="POST", resourcePath="/{proxy+}", path="/items/7"),
        event(resourcePath="/{proxy+}", path="/scan/../etc/passwd"),
        routes=routes,
    ).items
    for key in [(ALICE, "HOUR#2026-11-24T17"), ("GLOBAL", "HOUR#2026-11-24T17")]:
        adds = items[key].adds
        assert (adds["m_GET"], adds["m_POST"]) == (2, 1)
        assert (adds["e_GET /items/{id}"], adds["e_POST /items/{id}"], adds["e_GET (other)"]) == (1, 1, 1)


def test_refusals_show_per_ip_and_per_known_key() -> None:
    """An IP's hour holds refusals by reason and the keys and users seen; a refused key its own."""
    items = _aggregate(
        event("API_AUTH_FAILED", reason="REVOKED_KEY", apiKeyId="key00000001a"),
        event("API_RATE_LIMITED", reason="RATE_LIMIT_SECOND", apiKeyId="key00000002b", email="Bob@x.io"),
        event(apiKeyId="key00000002b", email="bob@x.io"),
    ).items
    ip = items[("IP#203.0.113.7", "HOUR#2026-11-24T17")]
    assert (ip.adds["r_REVOKED_KEY"], ip.adds["r_RATE_LIMIT_SECOND"], ip.adds["calls"]) == (1, 1, 1)
    assert ip.members == {
        KEYS_TRIED: {"key00000001a", "key00000002b"},
        USERS_SEEN: {"alice@example.com", "bob@x.io"},
    }
    revoked = items[("KEY#key00000001a", "HOUR#2026-11-24T17")].adds
    assert (revoked["authFailures"], revoked["r_REVOKED_KEY"]) == (1, 1)
    assert ("KEY#key00000002b", "HOUR#2026-11-24T17") in items  # refused once; its call is not a key item
    assert items[("KEY#key00000002b", "HOUR#2026-11-24T17")].adds == {
        "rateLimited": 1,
        "r_RATE_LIMIT_SECOND": 1,
    }


def test_every_event_is_archived_on_its_callers_page_of_the_hour() -> None:
    """Pages per caller and hour; callers without a user by IP; each event kept exactly as sent."""
    sent = event()
    aggregate = _aggregate(sent, event(email=None), event(at=datetime(2026, 11, 24, 18, 1, tzinfo=UTC)))
    hour = int(datetime(2026, 11, 24, 17, tzinfo=UTC).timestamp()) // 3600
    assert set(aggregate.pages) == {(ALICE, hour), ("IP#203.0.113.7", hour), (ALICE, hour + 1)}
    [events] = [unpack(page) for page in pack(aggregate.pages[(ALICE, hour)])]
    assert events == [sent]


def test_expiry_is_bucket_start_plus_its_retention() -> None:
    """Minutes and hours 7 days, days 400 days, months 25 months of 31 days, in epoch seconds."""
    start = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
    assert expiry("MINUTE#2026-11-24T17:52") == int((start + timedelta(days=7)).timestamp())
    assert expiry("HOUR#2026-11-24T17") == int((start.replace(minute=0) + timedelta(days=7)).timestamp())
    assert expiry("DAY#2026-11-24") == int(
        (datetime(2026, 11, 24, tzinfo=UTC) + timedelta(days=400)).timestamp()
    )
    assert expiry("MONTH#2026-11") == int(
        (datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=775)).timestamp()
    )


def test_responses_count_by_gateway_response_in_the_endpoint_items() -> None:
    """`g_<type>`: what `metering reconcile` subtracts as answered before the authorizer ran."""
    aggregate = Aggregate()
    at = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
    for error_type in ("THROTTLED", "THROTTLED", "-", "ACCESS_DENIED"):
        fields = access_log_line(at, status="429" if error_type != "-" else "200", errorType=error_type)
        aggregate.add_response(decode_access_log_line(orjson.dumps(fields), at))
    for sk in ("MINUTE#2026-11-24T17:52", "HOUR#2026-11-24T17"):
        adds = aggregate.items[("ENDPOINT#GET /items/{id}", sk)].adds
        assert (adds["responses"], adds["g_THROTTLED"], adds["g_ACCESS_DENIED"]) == (4, 2, 1)
        assert not any(name.startswith("g_-") for name in adds)
