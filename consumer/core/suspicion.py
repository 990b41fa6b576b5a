"""Suspicious source IPs: rules over one IP's hour item (`IP#<ip>` / `HOUR#...`), pure.

An IP's hour item holds what the consumer counted from that address in that hour (`calls`,
`authFailures`, `rateLimited`, refusals by reason, and the bounded sets `keysTried`, `usersSeen`).
`SuspicionRules.broken` says which rules the item breaks, so an IP is marked per hour, with the rules
it broke. The same function serves `metering security` (items read back) and the alerts raised after
each flush (the item's new values): both pass a plain mapping of the item's attributes.

| rule | setting (default) | the hour item breaks it when |
|---|---|---|
| `AUTH_FAILURES` | `auth_failures_per_hour` (100) | `authFailures >= 100` |
| `FAILURE_RATIO` | `failure_ratio` (0.5) | `authFailures / requests > 0.5`, when `requests >= min_requests` |
|  | `min_requests` (50) | |
| `KEYS_TRIED` | `keys_tried` (5) | `len(keysTried) > 5`: more than 5 known key ids were used from it |
| `RATE_LIMITED` | `rate_limited_per_hour` (100) | `rateLimited >= 100` |

`requests` is every counted request of the hour: `calls + authFailures + rateLimited`. Counts are
thresholds reached ("100 auth failures in an hour" breaks at the 100th); the ratio must be exceeded
and is compared exactly, as the decimal written (0.5 of 50 requests: 25 failures do not break it,
26 do). A setting of None turns its rule off (`failure_ratio` None turns off `FAILURE_RATIO`).
`keys_tried` stays below `MEMBER_CAP`: the set keeps every key id until it holds `MEMBER_CAP` of
them, so "more than K" is exact for any K below it and undecidable above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from consumer.core.aggregate import MEMBER_CAP
from contract.events import EventType
from contract.table import COUNTER_OF, KEYS_TRIED

AUTH_FAILURES = "AUTH_FAILURES"
FAILURE_RATIO = "FAILURE_RATIO"
KEYS_TRIED_RULE = "KEYS_TRIED"
RATE_LIMITED = "RATE_LIMITED"
RULES = (AUTH_FAILURES, FAILURE_RATIO, KEYS_TRIED_RULE, RATE_LIMITED)  # the order `broken` reports in

_CALLS = COUNTER_OF[EventType.API_CALL]
_AUTH_FAILURES = COUNTER_OF[EventType.API_AUTH_FAILED]
_RATE_LIMITED = COUNTER_OF[EventType.API_RATE_LIMITED]


@dataclass(frozen=True, slots=True)
class SuspicionRules:
    """Thresholds of the rules, per IP and hour; validated when built (`ValueError` naming the setting)."""

    auth_failures_per_hour: int | None = 100
    failure_ratio: float | None = 0.5
    min_requests: int = 50
    keys_tried: int | None = 5
    rate_limited_per_hour: int | None = 100

    def __post_init__(self) -> None:
        _count_setting("auth_failures_per_hour", self.auth_failures_per_hour, optional=True)
        _count_setting("min_requests", self.min_requests, optional=False)
        _count_setting("rate_limited_per_hour", self.rate_limited_per_hour, optional=True)
        _count_setting("keys_tried", self.keys_tried, optional=True, below=MEMBER_CAP)
        ratio = self.failure_ratio
        if ratio is not None and (
            isinstance(ratio, bool)
            or not isinstance(ratio, int | float)
            or not math.isfinite(ratio)
            or not 0 <= ratio < 1
        ):
            raise ValueError(f"failure_ratio: a number at least 0 and below 1, or null; got {ratio!r}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> SuspicionRules:
        """Rules from a mapping such as a JSON file's object; settings it leaves out keep their defaults."""
        if not isinstance(settings, Mapping):
            raise ValueError(f"rules: an object of settings, got {type(settings).__name__}")
        known = [field.name for field in fields(cls)]
        unknown = sorted(str(name) for name in settings if name not in known)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: unknown setting; the settings are {', '.join(known)}")
        return cls(**settings)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def broken(self, ip_hour_item: Mapping[str, Any]) -> list[str]:
        """The rules an IP's hour item breaks, in `RULES` order; absent counters count 0.

        `ip_hour_item` is the item's attributes as plain values: counters as ints (or Decimals, as
        boto3's resource layer gives them), `keysTried` as a set or a list.
        """
        auth_failures = _counter(ip_hour_item, _AUTH_FAILURES)
        rate_limited = _counter(ip_hour_item, _RATE_LIMITED)
        requests = _counter(ip_hour_item, _CALLS) + auth_failures + rate_limited
        broken: list[str] = []
        if self.auth_failures_per_hour is not None and auth_failures >= self.auth_failures_per_hour:
            broken.append(AUTH_FAILURES)
        if (
            self.failure_ratio is not None
            and requests >= self.min_requests
            and Fraction(auth_failures, requests) > _exact(self.failure_ratio)
        ):
            broken.append(FAILURE_RATIO)
        if self.keys_tried is not None and _members(ip_hour_item, KEYS_TRIED) > self.keys_tried:
            broken.append(KEYS_TRIED_RULE)
        if self.rate_limited_per_hour is not None and rate_limited >= self.rate_limited_per_hour:
            broken.append(RATE_LIMITED)
        return broken

    def describe(self) -> dict[str, str]:
        """Each rule as a sentence, or that it is off (what the operator reads next to a marked IP)."""
        ratio = None if self.failure_ratio is None else f"{self.failure_ratio:g}"
        return {
            AUTH_FAILURES: _or_off(self.auth_failures_per_hour, "at least {} auth failures in the hour"),
            FAILURE_RATIO: _or_off(
                ratio, f"more than {{}} of the hour's requests are auth failures, of {self.min_requests}+"
            ),
            KEYS_TRIED_RULE: _or_off(self.keys_tried, "more than {} distinct keys tried in the hour"),
            RATE_LIMITED: _or_off(self.rate_limited_per_hour, "at least {} rate-limited in the hour"),
        }


def _count_setting(name: str, value: object, *, optional: bool, below: int | None = None) -> None:
    if value is None and optional:
        return
    ceiling = f" and below {below}" if below is not None else ""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (below and value >= below):
        allowed = f"a whole number of at least 1{ceiling}{', or null' if optional else ''}"
        raise ValueError(f"{name}: {allowed}; got {value!r}")


def _counter(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise TypeError(f"{name}: a counter, got {type(value).__name__}")
    return int(value)


def _members(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    if value is None:
        return 0
    if isinstance(value, str | bytes) or not isinstance(value, set | frozenset | list | tuple):
        raise TypeError(f"{name}: a set or list of strings, got {type(value).__name__}")
    return len(set(value))


@lru_cache(maxsize=64)
def _exact(ratio: float) -> Fraction:
    """The ratio as the decimal it was written as (0.1 is 1/10, not the float's binary value)."""
    return Fraction(repr(ratio))


def _or_off(value: int | str | None, sentence: str) -> str:
    return "off" if value is None else sentence.format(value)


DEFAULT_RULES = SuspicionRules()


def broken(ip_hour_item: Mapping[str, Any], rules: SuspicionRules = DEFAULT_RULES) -> list[str]:
    """The rules an IP's hour item breaks (`SuspicionRules.broken`), under the default rules unless given."""
    return rules.broken(ip_hour_item)
