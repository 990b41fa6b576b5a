"""The threshold alert rules, each on its boundary, and when an episode may resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.core.alerts import RULES, AlertRules, Breach, worst

MINUTE, HOUR, MONTH = "MINUTE#2026-11-24T17:52", "HOUR#2026-11-24T17", "MONTH#2026-11"
ALICE = "USER#alice@example.com"


def rules_of(
    items: dict[tuple[str, str], dict[str, Any]], rules: AlertRules | None = None
) -> set[tuple[str, str]]:
    return {(b.rule, b.subject) for b in (rules or AlertRules()).breaches(items)}


@pytest.mark.parametrize(
    ("items", "breaks"),
    [
        ({(ALICE, HOUR): {"calls": 1000, "c52": 1000}}, False),
        ({(ALICE, HOUR): {"calls": 1001, "c52": 1001}}, True),
    ],
)
def test_user_calls_per_minute_is_over_the_threshold(items: dict[Any, Any], breaks: bool) -> None:
    """A user's minutes are counters of its hour item (`c52`: the calls of minute 52)."""
    assert (("USER_CALLS_PER_MINUTE", "alice@example.com") in rules_of(items)) is breaks


def test_each_minute_of_a_users_hour_is_judged_and_named_as_its_window() -> None:
    items = {(ALICE, HOUR): {"calls": 3500, "c05": 1500, "c06": 999, "c52": 1001, "a52": 5000}}
    found = [(b.window, b.value) for b in AlertRules().breaches(items) if b.rule == "USER_CALLS_PER_MINUTE"]
    assert sorted(found) == [("MINUTE#2026-11-24T17:05", 1500), ("MINUTE#2026-11-24T17:52", 1001)]
    assert [(b.window, b.value) for b in worst(AlertRules().breaches(items))] == [
        ("MINUTE#2026-11-24T17:52", 1001)  # an episode shows the latest minute
    ]


@pytest.mark.parametrize(("calls", "breaks"), [(89, False), (90, True)])
def test_plan_minute_allowance_reads_the_plan_of_the_users_total(calls: int, breaks: bool) -> None:
    """free allows 100 calls a minute: 90 % is 90 calls."""
    items = {(ALICE, HOUR): {"c52": calls}, (ALICE, "TOTAL"): {"calls": 5000, "plan": "free"}}
    assert (("PLAN_MINUTE_ALLOWANCE", "alice@example.com") in rules_of(items)) is breaks


@pytest.mark.parametrize(("calls", "breaks"), [(8999, False), (9000, True)])
def test_plan_month_allowance_reads_the_plan_on_the_month_item(calls: int, breaks: bool) -> None:
    """free includes 10,000 calls a month: 90 % is 9,000."""
    found = AlertRules().breaches({(ALICE, MONTH): {"calls": calls, "plan": "free"}})
    assert (any(b.rule == "PLAN_MONTH_ALLOWANCE" for b in found)) is breaks
    if breaks:
        assert found[0] == Breach("PLAN_MONTH_ALLOWANCE", "alice@example.com", MONTH, 90.0, 90.0, "free")


def test_an_unknown_plan_breaks_no_allowance() -> None:
    assert not rules_of({(ALICE, MONTH): {"calls": 10**9, "plan": "platinum"}})


@pytest.mark.parametrize(("failures", "breaks"), [(99, False), (100, True)])
def test_ip_auth_failures_per_hour(failures: int, breaks: bool) -> None:
    no_suspicion = AlertRules(suspicion=None)
    found = rules_of({("IP#198.51.100.7", HOUR): {"authFailures": failures}}, no_suspicion)
    assert (("IP_AUTH_FAILURES", "198.51.100.7") in found) is breaks


def test_a_suspicious_ip_names_the_rules_it_broke() -> None:
    item = {"authFailures": 500, "calls": 0, "keysTried": {f"key_{n}" for n in range(20)}}
    (breach,) = [
        b for b in AlertRules().breaches({("IP#198.51.100.7", HOUR): item}) if b.rule == "SUSPICIOUS_IP"
    ]
    assert breach.subject == "198.51.100.7" and breach.detail


@pytest.mark.parametrize(("limited", "breaks"), [(100, False), (101, True)])
def test_user_rate_limited_per_hour(limited: int, breaks: bool) -> None:
    assert (
        ("USER_RATE_LIMITED", "alice@example.com") in rules_of({(ALICE, HOUR): {"rateLimited": limited}})
    ) is breaks


@pytest.mark.parametrize(
    ("calls", "failures", "breaks"),
    [
        (80, 19, False),  # 99 requests: too few to judge
        (80, 20, True),  # 20 / 100 = 0.2
        (81, 20, False),  # 20 / 101 < 0.2
    ],
)
def test_global_auth_failure_ratio(calls: int, failures: int, breaks: bool) -> None:
    items = {("GLOBAL", MINUTE): {"calls": calls, "authFailures": failures}}
    assert (("AUTH_FAILURE_RATIO", "GLOBAL") in rules_of(items)) is breaks


def test_a_rule_set_to_null_is_off_and_unknown_settings_are_refused() -> None:
    rules = AlertRules.from_mapping(
        {"user_calls_per_minute": None, "suspicion": {"auth_failures_per_hour": 3}}
    )
    assert not rules_of({(ALICE, HOUR): {"c52": 10**6}}, rules)
    with pytest.raises(ValueError, match="unknown alert rule settings: calls"):
        AlertRules.from_mapping({"calls": 5})
    with pytest.raises(ValueError, match="resolve_grace_seconds"):
        AlertRules.from_mapping({"resolve_grace_seconds": None})
    with pytest.raises(ValueError, match="user_calls_per_minute"):
        AlertRules.from_mapping({"user_calls_per_minute": True})


def test_an_episode_resolves_once_the_window_after_its_last_breach_has_passed() -> None:
    rules = AlertRules(resolve_grace_seconds=30)
    start = datetime(2026, 11, 24, 17, 52, tzinfo=UTC)
    assert not rules.resolvable(MINUTE, start + timedelta(minutes=2, seconds=29))
    assert rules.resolvable(MINUTE, start + timedelta(minutes=2, seconds=30))
    hour = datetime(2026, 11, 24, 17, tzinfo=UTC)
    assert not rules.resolvable(HOUR, hour + timedelta(hours=2, seconds=29))
    assert rules.resolvable(HOUR, hour + timedelta(hours=2, seconds=30))
    # A month's allowance starts again with the next month.
    assert rules.resolvable(MONTH, datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC))
    assert not rules.resolvable(MONTH, datetime(2026, 11, 30, 23, 59, tzinfo=UTC))


def test_an_episode_shows_the_latest_window_then_the_highest_value() -> None:
    breaches = [
        Breach("USER_CALLS_PER_MINUTE", "a", "MINUTE#2026-11-24T17:51", 2000, 1000),
        Breach("USER_CALLS_PER_MINUTE", "a", MINUTE, 1500, 1000),
        Breach("USER_CALLS_PER_MINUTE", "b", MINUTE, 1200, 1000),
    ]
    assert {(b.subject, b.window, b.value) for b in worst(breaches)} == {
        ("a", MINUTE, 1500),
        ("b", MINUTE, 1200),
    }
    assert len(RULES) == len(set(RULES)) == 7
