"""Suspicious-IP rules: each rule below, at and above its boundary; settings validated with clear errors."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from consumer.core.aggregate import MEMBER_CAP
from consumer.core.suspicion import (
    AUTH_FAILURES,
    DEFAULT_RULES,
    FAILURE_RATIO,
    KEYS_TRIED_RULE,
    RATE_LIMITED,
    RULES,
    SuspicionRules,
    broken,
)

# Each rule alone: the others off.
ONLY_AUTH = SuspicionRules(failure_ratio=None, keys_tried=None, rate_limited_per_hour=None)
ONLY_RATIO = SuspicionRules(auth_failures_per_hour=None, keys_tried=None, rate_limited_per_hour=None)
ONLY_KEYS = SuspicionRules(auth_failures_per_hour=None, failure_ratio=None, rate_limited_per_hour=None)
ONLY_LIMITED = SuspicionRules(auth_failures_per_hour=None, failure_ratio=None, keys_tried=None)


def _item(calls: int = 0, auth: int = 0, limited: int = 0, keys: int = 0, **more: Any) -> dict[str, Any]:
    """An IP hour item's attributes as the sink returns them (bookkeeping included)."""
    return {
        "pk": "IP#198.51.100.9",
        "sk": "HOUR#2026-11-24T17",
        "bucket": "HOUR#2026-11-24T17",
        "expiresAt": 1_796_000_000,
        "w_shardId-000000000000": "00000000000000000042.0000000000",
        "calls": calls,
        "authFailures": auth,
        "rateLimited": limited,
        "keysTried": {f"key_{n}" for n in range(keys)},
    } | more


# --- each rule on its boundary ----------------------------------------------------------------


@pytest.mark.parametrize(("auth", "expected"), [(99, []), (100, [AUTH_FAILURES]), (101, [AUTH_FAILURES])])
def test_auth_failures_break_at_the_threshold(auth: int, expected: list[str]) -> None:
    """100 auth failures in an hour (the default) mark the IP; 99 do not."""
    assert ONLY_AUTH.broken(_item(calls=10_000, auth=auth)) == expected


@pytest.mark.parametrize(
    ("calls", "auth", "expected"),
    [
        (25, 25, []),  # 50 requests, exactly half: not above the ratio
        (24, 26, [FAILURE_RATIO]),  # 50 requests, 26 failures: above it
        (26, 24, []),
        (1, 48, []),  # 49 requests: below min_requests, however high the ratio
        (2, 48, [FAILURE_RATIO]),  # 50 requests: at min_requests
        (2, 49, [FAILURE_RATIO]),
    ],
)
def test_failure_ratio_breaks_above_the_ratio_with_at_least_min_requests(
    calls: int, auth: int, expected: list[str]
) -> None:
    """Auth failures above 0.5 of requests, once there are at least 50 requests (the defaults)."""
    assert ONLY_RATIO.broken(_item(calls=calls, auth=auth)) == expected


@pytest.mark.parametrize(("limited", "expected"), [(0, [FAILURE_RATIO]), (2, [])])
def test_rate_limited_requests_count_as_requests_not_as_failures(limited: int, expected: list[str]) -> None:
    """requests = calls + authFailures + rateLimited: 26 failures of 50 break it, of 52 (2 limited) not."""
    assert ONLY_RATIO.broken(_item(calls=24, auth=26, limited=limited)) == expected


@pytest.mark.parametrize(("auth", "expected"), [(10, []), (11, [FAILURE_RATIO])])
def test_the_ratio_is_compared_as_the_decimal_written(auth: int, expected: list[str]) -> None:
    """0.1 of 100 requests is exactly 10 (the float 0.1 is slightly above 1/10; 0.1 * 3 is not 0.3)."""
    rules = SuspicionRules(
        auth_failures_per_hour=None,
        failure_ratio=0.1,
        min_requests=1,
        keys_tried=None,
        rate_limited_per_hour=None,
    )
    assert rules.broken(_item(calls=100 - auth, auth=auth)) == expected


@pytest.mark.parametrize(("auth", "expected"), [(0, []), (1, [FAILURE_RATIO])])
def test_a_ratio_of_zero_marks_any_auth_failure(auth: int, expected: list[str]) -> None:
    """failure_ratio 0: one auth failure among enough requests is above it."""
    rules = SuspicionRules(failure_ratio=0, min_requests=1)
    assert rules.broken(_item(calls=5, auth=auth)) == expected


@pytest.mark.parametrize(("keys", "expected"), [(4, []), (5, []), (6, [KEYS_TRIED_RULE])])
def test_keys_tried_breaks_above_the_threshold(keys: int, expected: list[str]) -> None:
    """More than 5 distinct keys (the default) from one IP in an hour; exactly 5 is not more."""
    assert ONLY_KEYS.broken(_item(calls=keys, keys=keys)) == expected


def test_keys_tried_counts_distinct_keys_of_a_list_too() -> None:
    """The alert path may pass the set as a list: duplicates count once."""
    six = [f"key_{n}" for n in range(6)]
    assert ONLY_KEYS.broken({"keysTried": six}) == [KEYS_TRIED_RULE]
    assert ONLY_KEYS.broken({"keysTried": six[:5] * 3}) == []
    assert ONLY_KEYS.broken({"keysTried": tuple(six)}) == [KEYS_TRIED_RULE]


@pytest.mark.parametrize(("limited", "expected"), [(99, []), (100, [RATE_LIMITED]), (101, [RATE_LIMITED])])
def test_rate_limited_breaks_at_the_threshold(limited: int, expected: list[str]) -> None:
    """100 rate-limited requests in an hour (the default) mark the IP; 99 do not."""
    assert ONLY_LIMITED.broken(_item(calls=50, limited=limited)) == expected


def test_default_rules_on_their_boundaries_together() -> None:
    """Under the defaults, an item one short of every boundary breaks none; one past each breaks all."""
    assert DEFAULT_RULES.broken(_item(calls=51, auth=99, limited=99, keys=5)) == []
    assert broken(_item(calls=0, auth=101, limited=100, keys=6)) == list(RULES)


def test_a_custom_threshold_moves_the_boundary() -> None:
    """The threshold a file sets is the boundary: at it the rule breaks."""
    rules = SuspicionRules(auth_failures_per_hour=3)
    assert rules.broken(_item(calls=1000, auth=2)) == []
    assert rules.broken(_item(calls=1000, auth=3)) == [AUTH_FAILURES]


# --- the item as the alert path gives it --------------------------------------------------------


def test_absent_attributes_count_zero() -> None:
    """An item update carrying only some attributes is judged on what it has."""
    assert broken({}) == []
    assert broken({"authFailures": 100}) == [AUTH_FAILURES, FAILURE_RATIO]
    assert broken({"keysTried": None, "rateLimited": 100}) == [RATE_LIMITED]


def test_decimal_counters_as_boto3_resources_give_them() -> None:
    """boto3's resource layer gives numbers as Decimal: they count the same."""
    item = {"calls": Decimal(0), "authFailures": Decimal(100), "rateLimited": Decimal(1)}
    assert broken(item) == [AUTH_FAILURES, FAILURE_RATIO]


@pytest.mark.parametrize(
    "item", [{"calls": "12"}, {"authFailures": True}, {"rateLimited": None}, {"keysTried": "key_1"}]
)
def test_an_attribute_of_the_wrong_type_is_a_type_error(item: dict[str, Any]) -> None:
    """A counter that is not a number, or a set that is a string, is refused, not guessed."""
    with pytest.raises(TypeError):
        broken(item)


# --- settings ---------------------------------------------------------------------------------------


def test_the_documented_defaults() -> None:
    """The defaults are those the module documents."""
    assert SuspicionRules().as_dict() == {
        "auth_failures_per_hour": 100,
        "failure_ratio": 0.5,
        "min_requests": 50,
        "keys_tried": 5,
        "rate_limited_per_hour": 100,
    }


def test_from_mapping_keeps_defaults_for_settings_it_leaves_out() -> None:
    """A partial mapping overrides only what it names; as_dict round-trips."""
    rules = SuspicionRules.from_mapping(json.loads('{"keys_tried": 3, "failure_ratio": 0.8}'))
    assert rules == SuspicionRules(keys_tried=3, failure_ratio=0.8)
    assert SuspicionRules.from_mapping(rules.as_dict()) == rules


def test_null_turns_a_rule_off() -> None:
    """null turns a rule off, and its description says so."""
    rules = SuspicionRules.from_mapping({"auth_failures_per_hour": None, "failure_ratio": None})
    assert rules.broken(_item(auth=10_000)) == []
    assert rules.describe()[AUTH_FAILURES] == "off" and rules.describe()[FAILURE_RATIO] == "off"
    assert rules.describe()[KEYS_TRIED_RULE] == "more than 5 distinct keys tried in the hour"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth_failures": 10}, "auth_failures: unknown setting; the settings are auth_failures_per_hour"),
        (
            {"auth_failures_per_hour": 0},
            "auth_failures_per_hour: a whole number of at least 1, or null; got 0",
        ),
        ({"auth_failures_per_hour": -5}, "auth_failures_per_hour: a whole number"),
        ({"auth_failures_per_hour": 2.5}, "auth_failures_per_hour: a whole number"),
        ({"auth_failures_per_hour": "100"}, "auth_failures_per_hour: a whole number"),
        ({"rate_limited_per_hour": True}, "rate_limited_per_hour: a whole number"),
        ({"min_requests": None}, "min_requests: a whole number of at least 1; got None"),
        ({"min_requests": 0}, "min_requests: a whole number of at least 1; got 0"),
        ({"failure_ratio": 1}, "failure_ratio: a number at least 0 and below 1, or null; got 1"),
        ({"failure_ratio": 1.5}, "failure_ratio: a number at least 0 and below 1"),
        ({"failure_ratio": -0.1}, "failure_ratio: a number at least 0 and below 1"),
        ({"failure_ratio": float("nan")}, "failure_ratio: a number at least 0 and below 1"),
        ({"failure_ratio": "0.5"}, "failure_ratio: a number at least 0 and below 1"),
        ({"failure_ratio": False}, "failure_ratio: a number at least 0 and below 1"),
        ({"keys_tried": 0}, f"keys_tried: a whole number of at least 1 and below {MEMBER_CAP}, or null"),
        ({"keys_tried": MEMBER_CAP}, f"keys_tried: a whole number of at least 1 and below {MEMBER_CAP}"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_by_name(settings: dict[str, Any], message: str) -> None:
    """Each invalid value is refused with the setting named and what it takes."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        SuspicionRules.from_mapping(settings)


def test_the_highest_keys_tried_the_bounded_set_can_decide() -> None:
    """The set keeps every key until it holds MEMBER_CAP: more than MEMBER_CAP - 1 is still exact."""
    rules = SuspicionRules.from_mapping({"keys_tried": MEMBER_CAP - 1})
    assert rules.broken(_item(keys=MEMBER_CAP - 1)) == []
    assert rules.broken(_item(keys=MEMBER_CAP)) == [KEYS_TRIED_RULE]


@pytest.mark.parametrize("settings", [[], "rules", 5, None])
def test_rules_must_be_an_object(settings: Any) -> None:
    """A JSON array, string, number or null is not a rules object."""
    with pytest.raises(ValueError, match=r"^rules: an object of settings"):
        SuspicionRules.from_mapping(settings)


def test_rules_built_directly_are_validated_too() -> None:
    """The constructor validates as from_mapping does."""
    with pytest.raises(ValueError, match=r"^min_requests"):
        SuspicionRules(min_requests=0)
