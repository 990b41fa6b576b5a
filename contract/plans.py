"""Plans: their rate limits (the authorizer enforces them) and their monthly allowance (billing reads it).

A key copies its plan's rate limits when it is created (`authorizer.keystore`), so changing a limit
here changes only new keys. The allowance is read when usage is reported (`GET /v1/usage`,
`reads.usage`), never copied: it is what the invoice counts against, per calendar month in
UTC, and only `calls` (API_CALL events) use it up; refused requests (auth failures, rate-limited
calls) are counted but not billed.

Allowances: free 10,000 calls a month (a trial: about one call every 4 minutes), pro 1,000,000
(a steady 0.4 calls/s), enterprise 20,000,000 (about 7.7 calls/s). The rate limits are far above
those averages on purpose: they cap bursts, not the month.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    per_second: int
    per_minute: int
    monthly_calls: int  # calls included per calendar month (UTC)


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan("free", per_second=5, per_minute=100, monthly_calls=10_000),
        Plan("pro", per_second=50, per_minute=2_000, monthly_calls=1_000_000),
        Plan("enterprise", per_second=500, per_minute=20_000, monthly_calls=20_000_000),
    )
}
DEFAULT_PLAN = "free"


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown plan {name!r}; choose one of {', '.join(PLANS)}") from None
