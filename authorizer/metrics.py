"""What the authorizer counts, behind one small interface; README "Metrics" lists the names.

`Tally` keeps the counts in memory (tests, `metering simulate`); the Lambda publishes them as
CloudWatch Embedded Metric Format (see `authorizer.handler`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

RATE_LIMIT_FAIL_OPEN = "RateLimitFailOpen"  # requests allowed because the rate-limit table failed


class Metrics(Protocol):
    def add(self, name: str, value: float = 1.0) -> None: ...


class Tally:
    def __init__(self) -> None:
        self.counts: defaultdict[str, float] = defaultdict(float)

    def add(self, name: str, value: float = 1.0) -> None:
        self.counts[name] += value
