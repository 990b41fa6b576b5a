"""Plans and their rate limits. A key copies its plan's limits when it is created."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    per_second: int
    per_minute: int


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan("free", per_second=5, per_minute=100),
        Plan("pro", per_second=50, per_minute=2_000),
        Plan("enterprise", per_second=500, per_minute=20_000),
    )
}
DEFAULT_PLAN = "free"


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown plan {name!r}; choose one of {', '.join(PLANS)}") from None
