"""Is the metering complete? API Gateway's record of every request against the usage events, per
hour and endpoint (`metering reconcile`, the consumer's `UnmeteredRequests`; docs/completeness.md).

Both sides are already counted exactly in the analytics table, under the same endpoint names
(`consumer.core.routes`) and in the same hour: a usage event carries the time API Gateway received
its request (`authorizer.events.event_time`), the time its access-log line carries. Per hour and
endpoint:

- `requests`: the stage's access-log lines (`responses` on the `ENDPOINT#` hour item);
- `metered`: usage events of every type, calls and refusals (`e_<endpoint>` on the `GLOBAL` hour item);
- `before_authorizer`: lines of gateway responses API Gateway gives before it invokes the
  authorizer (`BEFORE_AUTHORIZER`, from `g_<type>` on the `ENDPOINT#` item): no event can exist for them;
- `unmetered`: requests - before_authorizer - metered, what the metering lost. Below zero, events have
  no line: their lines are not delivered yet (or CloudWatch Logs lost them). An hour's total adds
  the two signs apart (`HourTotal`), so one never hides the other.

Standard library only, key and index queries only (each index query followed by a BatchGetItem
of the items it lists), like the other reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from contract.table import (
    ENDPOINT_PREFIX,
    GLOBAL,
    RESPONSES,
    bucket_start,
    endpoint_counter,
    endpoint_pk,
    gateway_counter,
    hour_sk,
)
from reads import Table, counters_with, hours, of_bucket

# Gateway responses (`$context.error.responseType`) API Gateway answers before it invokes a REQUEST
# authorizer without identity sources (ecs/api-gateway.yaml), each with what it means.
BEFORE_AUTHORIZER: Final[Mapping[str, str]] = {
    "THROTTLED": "throttled by the stage, method or account (429)",
    "WAF_FILTERED": "blocked by AWS WAF (403)",
    "MISSING_AUTHENTICATION_TOKEN": "no such route or method (403)",
    "REQUEST_TOO_LARGE": "over API Gateway's request size (413)",
}
# The authorizer was invoked and did not answer (timeout, crash): its event may or may not have been
# sent, so these stay in the comparison; shown apart, they explain an unmetered remainder.
AUTHORIZER_FAILED: Final = ("AUTHORIZER_FAILURE", "AUTHORIZER_CONFIGURATION_ERROR")

_METERED, _GATEWAY = endpoint_counter(""), gateway_counter("")


@dataclass(frozen=True, slots=True)
class Completeness:
    """One hour of one endpoint."""

    hour: datetime
    endpoint: str
    requests: int  # access-log lines
    metered: int  # usage events
    before_authorizer: Mapping[str, int] = field(default_factory=dict)  # gateway response -> lines
    authorizer_failed: int = 0  # lines of AUTHORIZER_FAILED responses (counted in `requests` too)

    @property
    def explained(self) -> int:
        return sum(self.before_authorizer.values())

    @property
    def unmetered(self) -> int:
        """Requests the authorizer saw and no usage event counts; below 0: events without a line."""
        return self.requests - self.explained - self.metered

    @property
    def ratio(self) -> float | None:
        """Metered share of the requests that should have been metered; None without any."""
        expected = self.requests - self.explained
        return self.metered / expected if expected > 0 else None


@dataclass(frozen=True, slots=True)
class HourTotal:
    """Every endpoint of one hour. The remainders are added up by sign, endpoint by endpoint, so
    events without a line on one endpoint never hide requests lost on another."""

    hour: datetime
    requests: int = 0
    metered: int = 0
    explained: int = 0
    authorizer_failed: int = 0
    unmetered: int = 0  # the positive remainders: requests lost
    unlogged: int = 0  # the negative ones, as a count: events whose line has not arrived (or was lost)

    @property
    def ratio(self) -> float | None:
        """The share of the requests the authorizer saw that a usage event counts."""
        expected = self.requests - self.explained
        return (expected - self.unmetered) / expected if expected > 0 else None

    def plus(self, row: Completeness) -> HourTotal:
        return HourTotal(
            self.hour,
            self.requests + row.requests,
            self.metered + row.metered,
            self.explained + row.explained,
            self.authorizer_failed + row.authorizer_failed,
            self.unmetered + max(0, row.unmetered),
            self.unlogged + max(0, -row.unmetered),
        )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    hours: tuple[datetime, ...]
    rows: tuple[Completeness, ...]  # by hour, then endpoint; endpoints with neither side left out

    def of_hour(self, hour: datetime) -> HourTotal:
        total = HourTotal(hour)
        for row in self.rows:
            if row.hour == hour:
                total = total.plus(row)
        return total

    @property
    def totals(self) -> tuple[HourTotal, ...]:
        return tuple(self.of_hour(hour) for hour in self.hours)


def reconcile(table: Table, start: datetime, end: datetime, *, endpoint: str | None = None) -> Reconciliation:
    """The hours [start, end) touches, each endpoint's two records side by side: per hour one index
    query for the endpoint items (one key query for `endpoint`), and one key query for the GLOBAL hours."""
    window = hours(start, end)
    first, last = hour_sk(window[0]), hour_sk(window[-1])
    metered: dict[tuple[str, str], int] = {}
    for item in table.between(GLOBAL, first, last):
        for name, count in counters_with(item, _METERED).items():
            metered[(item["sk"], name)] = count
    logged: Iterable[dict[str, Any]]
    if endpoint is not None:
        logged = table.between(endpoint_pk(endpoint), first, last)
        metered = {key: count for key, count in metered.items() if key[1] == endpoint}
    else:
        logged = (item for at in window for item in of_bucket(table, hour_sk(at), ENDPOINT_PREFIX))
    lines = {(item["sk"], item["pk"].removeprefix(ENDPOINT_PREFIX)): item for item in logged}
    rows = [
        _row(key, lines.get(key, {}), metered.get(key, 0)) for key in sorted(lines.keys() | metered.keys())
    ]
    return Reconciliation(tuple(window), tuple(rows))


def _row(key: tuple[str, str], item: Mapping[str, Any], metered: int) -> Completeness:
    responses = counters_with(dict(item), _GATEWAY)
    return Completeness(
        hour=bucket_start(key[0]),
        endpoint=key[1],
        requests=int(item.get(RESPONSES, 0)),
        metered=metered,
        before_authorizer={kind: responses[kind] for kind in BEFORE_AUTHORIZER if responses.get(kind)},
        authorizer_failed=sum(responses.get(kind, 0) for kind in AUTHORIZER_FAILED),
    )
