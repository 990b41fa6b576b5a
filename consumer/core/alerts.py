"""Threshold alert rules, evaluated on the items a durable flush returns (pure).

Each rule reads one kind of item right after a flush wrote it (the whole item comes back with the
write, at no extra cost), so an alert is seconds behind the event. A breach names the rule, its
subject (a user, an IP, GLOBAL), the window (the item's time bucket), the value and the threshold;
`consumer.sinks.alerts` turns breaches into episodes (one FIRING, one RESOLVED) and notifications.

Rules and their defaults (`ALERT_RULES_FILE`, a JSON object, overrides any of them; `null` turns a
rule off):

- `USER_CALLS_PER_MINUTE` (a user's minute, counted in its hour item): `calls > user_calls_per_minute`
  (1,000).
- `PLAN_MINUTE_ALLOWANCE` (a user's minute): calls reach `plan_minute_percent` (90) % of the plan's
  per-minute limit.
- `PLAN_MONTH_ALLOWANCE` (a user's month): calls reach `plan_month_percent` (90) % of the plan's
  monthly calls.
- `IP_AUTH_FAILURES` (an IP's hour): `authFailures >= ip_auth_failures_per_hour` (100).
- `SUSPICIOUS_IP` (an IP's hour): it breaks a suspicious-IP rule (`consumer.core.suspicion`, whose
  thresholds the `suspicion` object sets).
- `USER_RATE_LIMITED` (a user's hour): `rateLimited > user_rate_limited_per_hour` (100).
- `AUTH_FAILURE_RATIO` (the GLOBAL minute): `authFailures / requests >= auth_failure_ratio` (0.2),
  with at least `auth_failure_min_requests` (100) requests.

An episode resolves once its last breaching window has closed and the next one has passed without
a breach (a month: once it has closed, as the allowance starts again), plus `resolve_grace_seconds`
(30) for late events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from consumer.core.suspicion import SuspicionRules
from contract.plans import PLANS
from contract.table import (
    GLOBAL,
    HOUR_PREFIX,
    IP_PREFIX,
    MINUTE_PREFIX,
    MONTH_PREFIX,
    PLAN,
    TOTAL,
    USER_PREFIX,
    bucket_start,
    minutes_of_hour,
)

ItemKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Breach:
    rule: str
    subject: str  # a user's email, an IP, or GLOBAL
    window: str  # the item's bucket: `MINUTE#2026-11-24T17:52`, `HOUR#2026-11-24T17`
    value: float
    threshold: float
    detail: str = ""  # e.g. the suspicious-IP rules broken


@dataclass(frozen=True, slots=True)
class AlertRules:
    user_calls_per_minute: int | None = 1000
    plan_minute_percent: float | None = 90.0
    plan_month_percent: float | None = 90.0
    ip_auth_failures_per_hour: int | None = 100
    user_rate_limited_per_hour: int | None = 100
    auth_failure_ratio: float | None = 0.2
    auth_failure_min_requests: int = 100
    resolve_grace_seconds: float = 30.0
    suspicion: SuspicionRules | None = field(default_factory=SuspicionRules)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> AlertRules:
        """Rules from a JSON object; `ValueError` naming the setting if one is unknown or invalid."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown alert rule settings: {', '.join(unknown)}")
        values = dict(settings)
        if isinstance(values.get("suspicion"), Mapping):
            values["suspicion"] = SuspicionRules.from_mapping(values["suspicion"])
        for name, value in values.items():
            if name != "suspicion":
                _check_number(name, value, optional=name not in _REQUIRED)
        return cls(**values)

    def breaches(self, items: Mapping[ItemKey, Mapping[str, Any]]) -> list[Breach]:
        """Every rule an item of a flush breaks, by the item's values after the flush."""
        found: list[Breach] = []
        plans = {pk: item.get(PLAN) for (pk, sk), item in items.items() if sk == TOTAL}
        for (pk, sk), item in items.items():
            if pk.startswith(USER_PREFIX) and sk.startswith(MONTH_PREFIX):
                found += self._allowance("PLAN_MONTH_ALLOWANCE", pk.removeprefix(USER_PREFIX), sk, item,
                                         item.get(PLAN), percent=self.plan_month_percent)  # fmt: skip
            elif pk.startswith(USER_PREFIX) and sk.startswith(HOUR_PREFIX):
                found += self._user_hour(pk.removeprefix(USER_PREFIX), sk, item, plans.get(pk))
            elif pk.startswith(IP_PREFIX) and sk.startswith(HOUR_PREFIX):
                found += self._ip_hour(pk.removeprefix(IP_PREFIX), sk, item)
            elif pk == GLOBAL and sk.startswith(MINUTE_PREFIX):
                found += self._auth_failure_ratio(sk, item)
        return found

    def _user_hour(self, user: str, sk: str, item: Mapping[str, Any], plan: str | None) -> list[Breach]:
        """The hour's refusals, and each of its minutes (a user's minutes live in its hour item)."""
        found = _over(
            "USER_RATE_LIMITED", user, sk, _count(item, "rateLimited"), self.user_rate_limited_per_hour
        )
        for minute, counts in minutes_of_hour(sk, item).items():
            found += self._user_minute(user, minute, counts, plan)
        return found

    def _user_minute(self, user: str, sk: str, item: Mapping[str, Any], plan: str | None) -> list[Breach]:
        found = _over("USER_CALLS_PER_MINUTE", user, sk, _count(item, "calls"), self.user_calls_per_minute)
        return found + self._allowance(
            "PLAN_MINUTE_ALLOWANCE", user, sk, item, plan, percent=self.plan_minute_percent
        )

    @staticmethod
    def _allowance(
        rule: str, user: str, sk: str, item: Mapping[str, Any], plan: str | None, *, percent: float | None
    ) -> list[Breach]:
        """Calls as a percentage of what the plan allows in the item's window (a minute, a month)."""
        if percent is None or plan not in PLANS:
            return []
        allowed = PLANS[plan].per_minute if sk.startswith(MINUTE_PREFIX) else PLANS[plan].monthly_calls
        calls = _count(item, "calls")
        if 100 * calls < percent * allowed:  # exact: a rounded percentage would break it early
            return []
        return [Breach(rule, user, sk, round(100 * calls / allowed, 1), percent, plan or "")]

    def _ip_hour(self, ip: str, sk: str, item: Mapping[str, Any]) -> list[Breach]:
        found = _at_least(
            "IP_AUTH_FAILURES", ip, sk, _count(item, "authFailures"), self.ip_auth_failures_per_hour
        )
        if self.suspicion is not None:
            broken = self.suspicion.broken(item)
            if broken:
                found.append(Breach("SUSPICIOUS_IP", ip, sk, len(broken), 1, ",".join(broken)))
        return found

    def _auth_failure_ratio(self, sk: str, item: Mapping[str, Any]) -> list[Breach]:
        requests = sum(_count(item, name) for name in ("calls", "authFailures", "rateLimited"))
        if self.auth_failure_ratio is None or requests < self.auth_failure_min_requests:
            return []
        ratio = _count(item, "authFailures") / requests
        if ratio < self.auth_failure_ratio:
            return []
        return [Breach("AUTH_FAILURE_RATIO", GLOBAL, sk, round(ratio, 4), self.auth_failure_ratio)]

    def resolvable(self, window: str, now: datetime) -> bool:
        """Whether an episode whose last breach was in `window` may resolve (see the module's doc)."""
        start = bucket_start(window)
        if window.startswith(MONTH_PREFIX):
            quiet_from = (start + timedelta(days=32)).replace(day=1)  # the month closed
        else:
            width = timedelta(minutes=1) if window.startswith(MINUTE_PREFIX) else timedelta(hours=1)
            quiet_from = start + 2 * width  # the window closed and the next one passed without a breach
        return now >= quiet_from + timedelta(seconds=self.resolve_grace_seconds)


_REQUIRED = ("auth_failure_min_requests", "resolve_grace_seconds")


def _check_number(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        off = ", or null to turn the rule off" if optional else ""
        raise ValueError(f"alert rule setting {name}={value!r}: a number >= 0{off}")


def _count(item: Mapping[str, Any], name: str) -> int:
    return int(item.get(name, 0))


def _over(rule: str, subject: str, sk: str, value: int, threshold: float | None) -> list[Breach]:
    return (
        [Breach(rule, subject, sk, value, threshold)] if threshold is not None and value > threshold else []
    )


def _at_least(rule: str, subject: str, sk: str, value: int, threshold: float | None) -> list[Breach]:
    return (
        [Breach(rule, subject, sk, value, threshold)] if threshold is not None and value >= threshold else []
    )


RULES = (
    "USER_CALLS_PER_MINUTE",
    "PLAN_MINUTE_ALLOWANCE",
    "PLAN_MONTH_ALLOWANCE",
    "IP_AUTH_FAILURES",
    "SUSPICIOUS_IP",
    "USER_RATE_LIMITED",
    "AUTH_FAILURE_RATIO",
)


def worst(breaches: Iterable[Breach]) -> list[Breach]:
    """One breach per rule and subject: the latest window, then the highest value (what an episode shows)."""
    chosen: dict[tuple[str, str], Breach] = {}
    for breach in breaches:
        key = (breach.rule, breach.subject)
        if key not in chosen or (breach.window, breach.value) > (chosen[key].window, chosen[key].value):
            chosen[key] = breach
    return list(chosen.values())
