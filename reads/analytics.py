"""API analytics from the analytics table: endpoint latency and errors, top endpoints, methods and
users, and what security looks at (refusals per source IP, key, reason and user).

Standard library only, like `reads`: each function takes a `Table` and a window
[start, end) of aware datetimes and returns frozen dataclasses. Key and index queries only, never
a Scan:

| read | items | queries |
|---|---|---|
| `endpoint_stats` | `ENDPOINT#` minute items (windows under 2 h), else hours | one index query per bucket |
| `endpoint_stats(endpoint=...)` | the same items of one endpoint | one key query |
| `top_endpoints`, `top_methods`, `refusals_by_hour` | `GLOBAL` hour items | one key query |
| `user_usage` | `USER#` hour items | one index query per hour |
| `ip_hours` / `key_refusals` | `IP#` / `KEY#` hour items | one index query per hour |
| `security` | the four above | three index queries per hour, one key query |

The index holds keys only: each index query is followed by a BatchGetItem per 100 items it lists
(`reads.of_bucket`).

Items are whole minutes or hours: a window reads every bucket it touches, and each result's
`Coverage` says which span that was (`read_from`, `read_to`). Quantiles are not computed here
(DDSketch is not standard library): latency histograms come back as their bucket counts, merged by
addition, for `consumer.core.latency.quantiles`.

What the counters mean: `e_` and `m_` (per endpoint and method, on GLOBAL and user hour items)
count every request, refused ones included, so rankings by endpoint and method are by requests.
Status classes and latencies come from API Gateway's access logs, a different source from the
authorizer's events: an endpoint's `responses` and the requests of `top_endpoints` need not agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.events import EventType
from contract.table import (
    COUNTER_OF,
    ENDPOINT_PREFIX,
    EXPIRES_AT,
    GLOBAL,
    INTEGRATION_BUCKET,
    INTEGRATION_SUM,
    INTEGRATIONS,
    IP_PREFIX,
    KEY_PREFIX,
    KEYS_TRIED,
    LATENCY_BUCKET,
    LATENCY_SUM,
    RESPONSES,
    USER_PREFIX,
    USERS_SEEN,
    bucket_start,
    endpoint_pk,
    hour_sk,
    minute_sk,
    reason_counter,
)
from reads import Table, counters_with, hours, of_bucket

MINUTE, HOUR = "minute", "hour"
MINUTE_WINDOW = timedelta(hours=2)  # `endpoint_stats` reads minute items for windows shorter than this
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
ALL_ENDPOINTS = "*"  # `EndpointReport.overall`'s name: every endpoint's counts added up

_CALLS = COUNTER_OF[EventType.API_CALL]
_AUTH_FAILURES = COUNTER_OF[EventType.API_AUTH_FAILED]
_RATE_LIMITED = COUNTER_OF[EventType.API_RATE_LIMITED]
_REASON, _METHOD, _ENDPOINT = reason_counter(""), "m_", "e_"
_STEP = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1)}


# -- windows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """The window asked for, and the buckets read for it (whole minutes or hours, in order)."""

    start: datetime
    end: datetime
    resolution: str  # MINUTE or HOUR
    buckets: tuple[str, ...]  # sort keys: `MINUTE#...` or `HOUR#...`

    @property
    def read_from(self) -> datetime:
        """The start of the first bucket read: at or before `start`."""
        return bucket_start(self.buckets[0])

    @property
    def read_to(self) -> datetime:
        """The end of the last bucket read: at or after `end`."""
        return bucket_start(self.buckets[-1]) + _STEP[self.resolution]


def coverage(start: datetime, end: datetime, resolution: str | None = None) -> Coverage:
    """The buckets [start, end) touches: minutes for windows under `MINUTE_WINDOW`, else hours."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes (UTC)")
    if start >= end:
        raise ValueError(f"the window is empty: {start.isoformat()} is not before {end.isoformat()}")
    chosen = resolution or (MINUTE if end - start < MINUTE_WINDOW else HOUR)
    if chosen == MINUTE:
        buckets = tuple(minute_sk(at) for at in minutes(start, end))
    elif chosen == HOUR:
        buckets = tuple(hour_sk(at) for at in hours(start, end))
    else:
        raise ValueError(f"resolution: {MINUTE!r} or {HOUR!r}, got {chosen!r}")
    return Coverage(start, end, chosen, buckets)


def minutes(start: datetime, end: datetime) -> list[datetime]:
    """The UTC minutes that [start, end) touches, in order (`reads.hours`, by the minute)."""
    step = _STEP[MINUTE]
    first = start.astimezone(UTC).replace(second=0, microsecond=0)
    count = max(1, -((first - end) // step))  # ceil((end - first) / step)
    return [first + n * step for n in range(count)]


# -- endpoints: responses, status classes, latency -------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One endpoint's responses over a window (API Gateway's access logs)."""

    endpoint: str  # `GET /items/{id}`
    responses: int
    statuses: Mapping[str, int]  # every class of STATUS_CLASSES -> responses
    latency_sum_ms: int
    latency: Mapping[str, int]  # response latency histogram: bucket suffix -> responses
    integrations: int  # responses with an integration latency
    integration_latency_sum_ms: int
    integration_latency: Mapping[str, int]

    @classmethod
    def of(cls, endpoint: str, counters: Mapping[str, int]) -> EndpointStats:
        """From the counters of an endpoint's items, added up (absent ones are 0)."""
        return cls(
            endpoint=endpoint,
            responses=counters.get(RESPONSES, 0),
            statuses={name: counters.get(f"s{name}", 0) for name in STATUS_CLASSES},
            latency_sum_ms=counters.get(LATENCY_SUM, 0),
            latency=_nonzero(counters_with(dict(counters), LATENCY_BUCKET)),
            integrations=counters.get(INTEGRATIONS, 0),
            integration_latency_sum_ms=counters.get(INTEGRATION_SUM, 0),
            integration_latency=_nonzero(counters_with(dict(counters), INTEGRATION_BUCKET)),
        )

    def error_rate(self, status_class: str) -> float | None:
        """The share of responses in a status class (`4xx`, `5xx`); None without responses."""
        return self.statuses.get(status_class, 0) / self.responses if self.responses else None

    @property
    def mean_latency_ms(self) -> float | None:
        """Over the responses with a latency: API Gateway may write `-` for one (the histogram
        and the sum leave it out, the response count keeps it)."""
        timed = sum(self.latency.values())
        return self.latency_sum_ms / timed if timed else None

    @property
    def mean_integration_latency_ms(self) -> float | None:
        return self.integration_latency_sum_ms / self.integrations if self.integrations else None


@dataclass(frozen=True, slots=True)
class EndpointReport:
    coverage: Coverage
    endpoints: tuple[EndpointStats, ...]  # most responses first, then by name
    overall: EndpointStats  # every endpoint's counts and histograms added up (`ALL_ENDPOINTS`)


def endpoint_stats(
    table: Table,
    start: datetime,
    end: datetime,
    *,
    endpoint: str | None = None,
    resolution: str | None = None,
) -> EndpointReport:
    """Responses, status classes and latency histograms per endpoint, over the buckets of the window.

    Minute items for windows under 2 h (to the minute), hour items otherwise (to the hour): one
    index query per bucket, or one key query on the endpoint's own items when `endpoint` is given.
    """
    window = coverage(start, end, resolution)
    if endpoint is not None:
        items: Iterable[dict[str, Any]] = table.between(
            endpoint_pk(endpoint), window.buckets[0], window.buckets[-1]
        )
    else:
        items = _of_buckets(table, window.buckets, ENDPOINT_PREFIX)
    per_endpoint: dict[str, Counter[str]] = {}
    for item in items:
        name = item["pk"].removeprefix(ENDPOINT_PREFIX)
        per_endpoint.setdefault(name, Counter()).update(_counters(item))
    stats = [EndpointStats.of(name, counters) for name, counters in per_endpoint.items()]
    stats.sort(key=lambda s: (-s.responses, s.endpoint))
    overall: Counter[str] = Counter()
    for counters in per_endpoint.values():
        overall.update(counters)
    return EndpointReport(window, tuple(stats), EndpointStats.of(ALL_ENDPOINTS, overall))


# -- rankings: endpoints, methods, users -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Ranking:
    coverage: Coverage
    total: int  # every request of the window's hours
    ranked: tuple[Ranked, ...]  # every name, highest count first, then by name


def top_endpoints(table: Table, start: datetime, end: datetime) -> Ranking:
    """Requests per endpoint (refused ones included), from the GLOBAL hour items: one key query."""
    return _ranking(table, start, end, _ENDPOINT)


def top_methods(table: Table, start: datetime, end: datetime) -> Ranking:
    """Requests per HTTP method (refused ones included; `-` when none was sent): one key query."""
    return _ranking(table, start, end, _METHOD)


def _ranking(table: Table, start: datetime, end: datetime, prefix: str) -> Ranking:
    window = coverage(start, end, HOUR)
    counts: Counter[str] = Counter()
    for item in _global_hours(table, window):
        counts.update(counters_with(item, prefix))
    ranked = tuple(Ranked(name, count) for name, count in _ranked(counts) if count)
    return Ranking(window, sum(counts.values()), ranked)


@dataclass(frozen=True, slots=True)
class UserUsage:
    email: str
    calls: int
    auth_failures: int
    rate_limited: int

    @property
    def requests(self) -> int:
        return self.calls + self.auth_failures + self.rate_limited


@dataclass(frozen=True, slots=True)
class Users:
    coverage: Coverage
    users: tuple[UserUsage, ...]  # most calls first, then most requests, then by email


def user_usage(table: Table, start: datetime, end: datetime) -> Users:
    """Every user's counts over the window's hours: one index query per hour (`USER#` hour items)."""
    window = coverage(start, end, HOUR)
    return Users(window, _users(table, window))


def _users(table: Table, window: Coverage) -> tuple[UserUsage, ...]:
    per_user: dict[str, Counter[str]] = {}
    for item in _of_buckets(table, window.buckets, USER_PREFIX):
        per_user.setdefault(item["pk"].removeprefix(USER_PREFIX), Counter()).update(_counters(item))
    users = [
        UserUsage(email, c[_CALLS], c[_AUTH_FAILURES], c[_RATE_LIMITED]) for email, c in per_user.items()
    ]
    users.sort(key=lambda u: (-u.calls, -u.requests, u.email))
    return tuple(users)


# -- security: refusals by source IP, key, reason and user ------------------------------------------


@dataclass(frozen=True, slots=True)
class IpHour:
    """One source IP's hour item: what the suspicion rules judge."""

    ip: str
    hour: datetime
    calls: int
    auth_failures: int
    rate_limited: int
    reasons: Mapping[str, int]  # refusals by reason (`UNKNOWN_KEY`, `RATE_LIMIT_SECOND`, ...)
    keys_tried: frozenset[str]  # known key ids used from the IP (bounded: see README)
    users_seen: frozenset[str]

    def attributes(self) -> dict[str, Any]:
        """The item's attributes as the writer names them (`consumer.core.suspicion` reads these)."""
        return {
            _CALLS: self.calls,
            _AUTH_FAILURES: self.auth_failures,
            _RATE_LIMITED: self.rate_limited,
            **{reason_counter(reason): count for reason, count in self.reasons.items()},
            KEYS_TRIED: set(self.keys_tried),
            USERS_SEEN: set(self.users_seen),
        }


@dataclass(frozen=True, slots=True)
class IpUsage:
    """One source IP over the whole window: its hour items added up, its sets joined."""

    ip: str
    calls: int
    auth_failures: int
    rate_limited: int
    reasons: Mapping[str, int]
    keys_tried: frozenset[str]
    users_seen: frozenset[str]
    hours: int  # hours with an item

    @property
    def refused(self) -> int:
        return self.auth_failures + self.rate_limited


@dataclass(frozen=True, slots=True)
class KeyRefusals:
    """One known API key's refused requests over the window (`KEY#` hour items)."""

    key_id: str
    auth_failures: int
    rate_limited: int
    reasons: Mapping[str, int]

    @property
    def refused(self) -> int:
        return self.auth_failures + self.rate_limited


@dataclass(frozen=True, slots=True)
class ReasonsHour:
    hour: datetime
    reasons: Mapping[str, int]  # refusals by reason in that hour, every source; empty when none

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


@dataclass(frozen=True, slots=True)
class SecurityReport:
    coverage: Coverage
    ip_hours: tuple[IpHour, ...]  # by hour, then IP
    ips: tuple[IpUsage, ...]  # most auth failures first, then most rate limited, then by IP
    keys: tuple[KeyRefusals, ...]  # same order
    refusals_by_hour: tuple[ReasonsHour, ...]  # every hour of the window, in order
    users: tuple[UserUsage, ...]  # most rate limited first, then most calls, then by email


def ip_hours(table: Table, start: datetime, end: datetime) -> tuple[IpHour, ...]:
    """Every source IP's hour items in the window's hours: one index query per hour."""
    return _ip_hours(table, coverage(start, end, HOUR))


def _ip_hours(table: Table, window: Coverage) -> tuple[IpHour, ...]:
    found = [
        IpHour(
            ip=item["pk"].removeprefix(IP_PREFIX),
            hour=bucket_start(item["sk"]),
            calls=item.get(_CALLS, 0),
            auth_failures=item.get(_AUTH_FAILURES, 0),
            rate_limited=item.get(_RATE_LIMITED, 0),
            reasons=_nonzero(counters_with(item, _REASON)),
            keys_tried=frozenset(item.get(KEYS_TRIED, ())),
            users_seen=frozenset(item.get(USERS_SEEN, ())),
        )
        for item in _of_buckets(table, window.buckets, IP_PREFIX)
    ]
    found.sort(key=lambda h: (h.hour, h.ip))
    return tuple(found)


def per_ip(hours_of_ips: Iterable[IpHour]) -> tuple[IpUsage, ...]:
    """IP hour items added up per IP, most auth failures first, then most rate limited, then by IP."""
    grouped: dict[str, list[IpHour]] = {}
    for hour in hours_of_ips:
        grouped.setdefault(hour.ip, []).append(hour)
    usage = []
    for ip, its_hours in grouped.items():
        reasons: Counter[str] = Counter()
        for hour in its_hours:
            reasons.update(hour.reasons)
        usage.append(
            IpUsage(
                ip=ip,
                calls=sum(h.calls for h in its_hours),
                auth_failures=sum(h.auth_failures for h in its_hours),
                rate_limited=sum(h.rate_limited for h in its_hours),
                reasons=dict(reasons),
                keys_tried=frozenset().union(*(h.keys_tried for h in its_hours)),
                users_seen=frozenset().union(*(h.users_seen for h in its_hours)),
                hours=len(its_hours),
            )
        )
    usage.sort(key=lambda u: (-u.auth_failures, -u.rate_limited, u.ip))
    return tuple(usage)


def key_refusals(table: Table, start: datetime, end: datetime) -> tuple[KeyRefusals, ...]:
    """Refused requests per known key over the window's hours: one index query per hour."""
    return _key_refusals(table, coverage(start, end, HOUR))


def _key_refusals(table: Table, window: Coverage) -> tuple[KeyRefusals, ...]:
    per_key: dict[str, Counter[str]] = {}
    for item in _of_buckets(table, window.buckets, KEY_PREFIX):
        per_key.setdefault(item["pk"].removeprefix(KEY_PREFIX), Counter()).update(_counters(item))
    keys = [
        KeyRefusals(key_id, c[_AUTH_FAILURES], c[_RATE_LIMITED], _nonzero(counters_with(c, _REASON)))
        for key_id, c in per_key.items()
    ]
    keys.sort(key=lambda k: (-k.auth_failures, -k.rate_limited, k.key_id))
    return tuple(keys)


def refusals_by_hour(table: Table, start: datetime, end: datetime) -> tuple[ReasonsHour, ...]:
    """Refusals by reason in every hour of the window (GLOBAL hour items): one key query."""
    return _refusals_by_hour(table, coverage(start, end, HOUR))


def _refusals_by_hour(table: Table, window: Coverage) -> tuple[ReasonsHour, ...]:
    found = {item["sk"]: _nonzero(counters_with(item, _REASON)) for item in _global_hours(table, window)}
    return tuple(ReasonsHour(bucket_start(sk), found.get(sk, {})) for sk in window.buckets)


def security(table: Table, start: datetime, end: datetime) -> SecurityReport:
    """Everything `metering security` shows: three index queries per hour and one key query."""
    window = coverage(start, end, HOUR)
    found = _ip_hours(table, window)
    users = sorted(_users(table, window), key=lambda u: (-u.rate_limited, -u.calls, u.email))
    return SecurityReport(
        coverage=window,
        ip_hours=found,
        ips=per_ip(found),
        keys=_key_refusals(table, window),
        refusals_by_hour=_refusals_by_hour(table, window),
        users=tuple(users),
    )


# -- items -------------------------------------------------------------------------------------------


def _of_buckets(table: Table, buckets: Iterable[str], pk_prefix: str) -> Iterator[dict[str, Any]]:
    for bucket in buckets:
        yield from of_bucket(table, bucket, pk_prefix)


def _global_hours(table: Table, window: Coverage) -> Iterator[dict[str, Any]]:
    return table.between(GLOBAL, window.buckets[0], window.buckets[-1])


def _counters(item: Mapping[str, Any]) -> dict[str, int]:
    """An item's numeric attributes that add up across buckets (not its expiry)."""
    return {
        name: value
        for name, value in item.items()
        if isinstance(value, int) and not isinstance(value, bool) and name != EXPIRES_AT
    }


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {name: count for name, count in counts.items() if count}


def _ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
