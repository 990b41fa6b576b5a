"""In-memory aggregation of events into the analytics table's items (`contract.table`) and archive pages.

Buckets come from the event's own timestamp in UTC, so a replay lands in the same items as the
original run. A usage event adds to:
- its user's all-time (TOTAL), hour (with its minute, method and endpoint), day and month items
  (all-time and month items also hold the first and last times seen and the plan);
- the GLOBAL minute, hour (methods, endpoints, refusals by reason), day and month items;
- its source IP's hour item (refusals by reason, the keys and users seen from it);
- its key's hour item, when a known key was refused (a revoked key still in use shows up);
- its caller's archive page of that hour (the event as it was sent; by IP without a user).
A response (API Gateway's access log) adds to its endpoint's minute and hour items: responses by
status class and by gateway response type, response and integration latency sums and histograms
(`consumer.core.latency`).
A user's hour, day and month items are "active": the flush that creates one counts an active user
in the GLOBAL item of the same bucket (see the sinks).

Per event, `add` only counts the event in one group (what it shares with other events: user,
source IP, minute, type, endpoint, reason, key, plan) and keeps its bytes for the archive. The
groups become item updates once, when the batch is written: the cost per event stays a few dict
operations however many items an event touches (bench/consumer_throughput.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from consumer.core.access_logs import ResponseEvent
from consumer.core.events import UsageEvent
from consumer.core.latency import bucket
from consumer.core.routes import Routes
from contract.events import EventType, email_key
from contract.table import (
    BUCKET,
    COUNTER_OF,
    EXPIRES_AT,
    GLOBAL,
    INTEGRATION_BUCKET,
    INTEGRATION_SUM,
    INTEGRATIONS,
    KEYS_TRIED,
    LATENCY_BUCKET,
    LATENCY_SUM,
    PLAN,
    RESPONSES,
    TOTAL,
    USERS_SEEN,
    day_sk,
    endpoint_counter,
    endpoint_pk,
    expiry,
    gateway_counter,
    hour_sk,
    ip_pk,
    key_pk,
    method_counter,
    minute_counter,
    minute_sk,
    month_sk,
    reason_counter,
    status_counter,
    user_pk,
)

ItemKey = tuple[str, str]  # (pk, sk)
PageKey = tuple[str, int]  # the caller's item pk (`USER#..` or `IP#..`), epoch hour
# A bounded string set takes at most this many members per flush, and none once it holds this
# many: it never holds twice as many (400 KB is DynamoDB's item limit; members are ids, emails).
MEMBER_CAP = 50
_EPOCH, _MILLISECOND, _MINUTE = (
    datetime(1970, 1, 1, tzinfo=UTC),
    timedelta(milliseconds=1),
    timedelta(minutes=1),
)
# Events of one group count alike in the items of their family; each family's group holds only
# what those items need, so groups stay few however varied the traffic (epoch minutes and hours).
UserGroup = tuple[str, int, EventType, str, str, str | None]  # user, minute, type, method, endpoint, plan
TotalGroup = tuple[int, EventType, str, str, str | None]  # minute, type, method, endpoint, reason
AddressGroup = tuple[str, int, EventType, str | None]  # source IP, hour, type, reason
KeyGroup = tuple[str, int, EventType, str | None]  # refused known key, hour, type, reason
# minute, endpoint, status class (2 for 2xx), latency bucket, gateway response type; None where API
# Gateway wrote `-`
ResponseGroup = tuple[int, str, int | None, str | None, str | None]
IntegrationGroup = tuple[int, str, str]  # minute, endpoint, integration latency bucket


@dataclass(slots=True)
class ItemUpdate:
    """What one flush adds to one item."""

    adds: dict[str, int] = field(default_factory=dict)  # numeric ADD: counters, histogram buckets
    sets: dict[str, str | int] = field(default_factory=dict)  # the same in every flush: bucket, expiry
    first_seen: datetime | None = None  # all-time items only: min and max of the events' times
    last_seen: datetime | None = None
    members: dict[str, set[str]] = field(default_factory=dict)  # bounded string sets (sinks cap them)
    active: bool = False  # a user's hour/day/month item: creating it counts an active user

    def add(self, attribute: str, amount: int = 1) -> None:
        self.adds[attribute] = self.adds.get(attribute, 0) + amount

    def seen(self, first: datetime, last: datetime) -> None:
        self.first_seen = first if self.first_seen is None else min(self.first_seen, first)
        self.last_seen = last if self.last_seen is None else max(self.last_seen, last)

    def member(self, attribute: str, value: str) -> None:
        self.members.setdefault(attribute, set()).add(value)


@dataclass(slots=True)
class Aggregate:
    """Events of one flush range: counted in groups per item family, kept as sent for the archive."""

    routes: Routes = field(default_factory=Routes)
    users: dict[UserGroup, list[int]] = field(default_factory=dict)  # [events, first ms, last ms]
    totals: dict[TotalGroup, int] = field(default_factory=dict)
    addresses: dict[AddressGroup, int] = field(default_factory=dict)
    seen_from: dict[tuple[str, int], tuple[set[str], set[str]]] = field(default_factory=dict)  # keys, users
    keys: dict[KeyGroup, int] = field(default_factory=dict)
    responses: dict[ResponseGroup, list[int]] = field(default_factory=dict)  # [responses, latency sum]
    integrations: dict[IntegrationGroup, list[int]] = field(default_factory=dict)  # [count, latency sum]
    pages: dict[PageKey, list[bytes]] = field(default_factory=dict)
    event_seconds: dict[int, int] = field(default_factory=dict)  # usage events per epoch second: latency
    events: int = 0
    _items: dict[ItemKey, ItemUpdate] | None = None

    def add(self, event: UsageEvent, data: bytes) -> None:
        """Count one event; `data` is the event as it was sent (what the archive keeps).

        The hot path of the consumer (bench/consumer_throughput.py): plain dict operations, no
        object made that the group does not keep."""
        millis = (event.timestamp - _EPOCH) // _MILLISECOND  # exact: floats can lose the last digit
        minute = millis // 60_000
        hour = minute // 60
        kind, method, source_ip = event.event_type, event.http_method or "-", event.source_ip
        reason = None if kind is EventType.API_CALL else event.reason or "-"
        endpoint = self.routes.endpoint(event.http_method, event.resource_path, event.path)
        user = None if event.user_email is None else email_key(event.user_email)
        if user is not None:
            _extend(self.users, (user, minute, kind, method, endpoint, event.plan), millis)
        page_key = (user_pk(user) if user is not None else ip_pk(source_ip or "-"), hour)
        page = self.pages.get(page_key)
        if page is None:
            self.pages[page_key] = [data]
        else:
            page.append(data)
        totals, seconds, group = self.totals, self.event_seconds, (minute, kind, method, endpoint, reason)
        totals[group] = totals.get(group, 0) + 1
        seconds[millis // 1000] = seconds.get(millis // 1000, 0) + 1
        if source_ip:
            addresses, address = self.addresses, (source_ip, hour, kind, reason)
            addresses[address] = addresses.get(address, 0) + 1
            self._seen_from(source_ip, hour, event.api_key_id, user)
        if reason is not None and event.api_key_id:
            _count(self.keys, (event.api_key_id, hour, kind, reason))
        self.events += 1
        self._items = None

    def add_response(self, event: ResponseEvent) -> None:
        """Count one response of API Gateway's access logs in its endpoint's minute and hour."""
        minute = (event.timestamp - _EPOCH) // _MINUTE
        endpoint = self.routes.endpoint(event.http_method, event.resource_path, event.path)
        status, latency = event.status, event.response_latency_ms
        status_class = None if status is None else status // 100
        group = (
            minute,
            endpoint,
            status_class,
            None if latency is None else bucket(latency),
            event.error_type,
        )
        _sum(self.responses, group, latency or 0)
        if event.integration_latency_ms is not None:
            integration = event.integration_latency_ms
            _sum(self.integrations, (minute, endpoint, bucket(integration)), integration)
        self.events += 1
        self._items = None

    def _seen_from(self, source_ip: str, hour: int, api_key_id: str | None, user: str | None) -> None:
        seen = self.seen_from.get((source_ip, hour))
        if seen is None:
            seen = self.seen_from[(source_ip, hour)] = (set(), set())
        keys, users = seen
        if api_key_id and len(keys) < MEMBER_CAP:  # a flush adds at most MEMBER_CAP (sinks)
            keys.add(api_key_id)
        if user and len(users) < MEMBER_CAP:
            users.add(user)

    @property
    def items(self) -> dict[ItemKey, ItemUpdate]:
        """The item updates of every event added so far (built once, when first asked for)."""
        if self._items is None:
            self._items = _Items().of(self)
        return self._items


class _Items:
    """Groups of events into item updates: every rule of which event counts where is here."""

    def __init__(self) -> None:
        self.items: dict[ItemKey, ItemUpdate] = {}

    def of(self, aggregate: Aggregate) -> dict[ItemKey, ItemUpdate]:
        self._users(aggregate.users)
        self._totals(aggregate.totals)
        self._addresses(aggregate.addresses, aggregate.seen_from)
        for (api_key_id, hour, kind, reason), count in aggregate.keys.items():
            self._refusals(key_pk(api_key_id), hour, kind, reason, count)
        self._endpoints(aggregate.responses, aggregate.integrations)
        return self.items

    def _users(self, groups: dict[UserGroup, list[int]]) -> None:
        for group, (count, first, last) in groups.items():
            self._user(group, count)
            # All time, and the month (what an invoice shows): first and last seen, the plan.
            pk = user_pk(group[0])
            for billed in (self._item(pk, TOTAL), self._bucket(pk, _buckets(group[1])[3])):
                billed.seen(_utc(first), _utc(last))
                if group[5]:
                    billed.sets[PLAN] = group[5]

    def _totals(self, groups: dict[TotalGroup, int]) -> None:
        for (minute, kind, method, endpoint, reason), count in groups.items():
            buckets = _buckets(minute)
            for sk in buckets:
                self._bucket(GLOBAL, sk).add(COUNTER_OF[kind], count)
            hourly = self._bucket(GLOBAL, buckets[1])
            hourly.add(method_counter(method), count)
            hourly.add(endpoint_counter(endpoint), count)
            if reason is not None:
                hourly.add(reason_counter(reason), count)

    def _addresses(
        self, groups: dict[AddressGroup, int], seen_from: dict[tuple[str, int], tuple[set[str], set[str]]]
    ) -> None:
        for (source_ip, hour, kind, reason), count in groups.items():
            self._refusals(ip_pk(source_ip), hour, kind, reason, count)
        for (source_ip, hour), (keys, users) in seen_from.items():
            address = self._bucket(ip_pk(source_ip), _hour_sk(hour))
            address.members.update(
                {name: seen for name, seen in ((KEYS_TRIED, keys), (USERS_SEEN, users)) if seen}
            )

    def _endpoints(
        self, responses: dict[ResponseGroup, list[int]], integrations: dict[IntegrationGroup, list[int]]
    ) -> None:
        for (minute, endpoint, status, latency, response_type), (count, summed) in responses.items():
            for sk in _buckets(minute)[:2]:
                stats = self._bucket(endpoint_pk(endpoint), sk)
                stats.add(RESPONSES, count)  # a `-` costs its counter, never the response
                if status is not None:
                    stats.add(status_counter(status * 100), count)
                if latency is not None:
                    stats.add(LATENCY_SUM, summed)
                    stats.add(LATENCY_BUCKET + latency, count)
                if response_type is not None:
                    stats.add(gateway_counter(response_type), count)
        for (minute, endpoint, latency), (count, summed) in integrations.items():
            for sk in _buckets(minute)[:2]:
                stats = self._bucket(endpoint_pk(endpoint), sk)
                stats.add(INTEGRATIONS, count)
                stats.add(INTEGRATION_SUM, summed)
                stats.add(INTEGRATION_BUCKET + latency, count)

    def _user(self, group: UserGroup, count: int) -> None:
        user, minute, kind, method, endpoint, _ = group
        pk, counter, buckets = user_pk(user), COUNTER_OF[kind], _buckets(minute)
        self._item(pk, TOTAL).add(counter, count)
        for sk in buckets[1:]:
            item = self._bucket(pk, sk)
            item.add(counter, count)
            item.active = True
        hourly = self._bucket(pk, buckets[1])
        hourly.add(minute_counter(counter, minute % 60), count)  # a user's minutes: in its hour item
        hourly.add(method_counter(method), count)
        hourly.add(endpoint_counter(endpoint), count)

    def _refusals(self, pk: str, hour: int, kind: EventType, reason: str | None, count: int) -> None:
        item = self._bucket(pk, _hour_sk(hour))
        item.add(COUNTER_OF[kind], count)
        if reason is not None:
            item.add(reason_counter(reason), count)

    def _item(self, pk: str, sk: str) -> ItemUpdate:
        update = self.items.get((pk, sk))
        if update is None:
            update = self.items[(pk, sk)] = ItemUpdate()
        return update

    def _bucket(self, pk: str, sk: str) -> ItemUpdate:
        update = self.items.get((pk, sk))
        if update is None:
            update = self.items[(pk, sk)] = ItemUpdate(sets={BUCKET: sk, EXPIRES_AT: _expiry(sk)})
        return update


def _count(groups: dict[Any, int], group: Any) -> None:
    groups[group] = groups.get(group, 0) + 1


def _sum(groups: dict[Any, list[int]], group: Any, value: int) -> None:
    """Count an event in its group and add its value to the group's sum."""
    counted = groups.get(group)
    if counted is None:
        groups[group] = [1, value]
    else:
        counted[0] += 1
        counted[1] += value


def _extend(groups: dict[Any, list[int]], group: Any, millis: int) -> None:
    """Count an event in its group and widen the group's first and last times."""
    counted = groups.get(group)
    if counted is None:
        groups[group] = [1, millis, millis]
        return
    counted[0] += 1
    if millis < counted[1]:
        counted[1] = millis
    elif millis > counted[2]:
        counted[2] = millis


@lru_cache(maxsize=4096)
def _buckets(epoch_minute: int) -> tuple[str, str, str, str]:
    """The minute, hour, day and month sort keys of one minute; cached: events cluster in time."""
    at = datetime.fromtimestamp(epoch_minute * 60, UTC)
    return minute_sk(at), hour_sk(at), day_sk(at), month_sk(at)


@lru_cache(maxsize=4096)
def _hour_sk(epoch_hour: int) -> str:
    return hour_sk(datetime.fromtimestamp(epoch_hour * 3600, UTC))


@lru_cache(maxsize=4096)
def _expiry(sk: str) -> int:
    return expiry(sk)


def _utc(millis: int) -> datetime:
    return _EPOCH + millis * _MILLISECOND
